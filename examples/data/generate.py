#!/usr/bin/env python3
"""Writes the example ERP exports, mapping, expectations and e-mails of examples/data.

Deterministic (a fixed seed, no clock): running it again rewrites the same bytes.

    python3 examples/data/generate.py [--out DIR]

Writes, beside this script (or into DIR):
  order_system.csv   the order system: UTF-8 with BOM, comma-delimited, English headers,
                     times with zones, a few exact duplicate rows
  sales.csv          the sales system: GBK, semicolon-delimited, Chinese headers, local times
                     without zone (Asia/Shanghai, from mapping.toml), amounts in ¥ / 元 / USD
  finance.json       finance: a JSON object holding the records, camelCase keys, epoch-ms times
  mapping.toml       what the headers do not say (currency column, remark column, time zone)
  expected/intake.json
                     what `flowbot intake --time-zone Asia/Shanghai` must make of them: every bad
                     row (file, row, line, kinds) and every order (fields, sources, conflicted
                     fields), computed here from how the data was built, for the end-to-end test
  emails/NAME.txt, emails/NAME.expected.json
                     free-text orders in English, Chinese and both, with the fields order_id,
                     customer, total, currency (null where the mail leaves one out)
"""

import argparse
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

OUT = Path(__file__).resolve().parent
SEED = 20261201
SHANGHAI = timezone(timedelta(hours=8))
DAY = datetime(2026, 12, 1, tzinfo=SHANGHAI)

CUSTOMERS = [
    ("C-001", "ACME Ltd", "USD"),
    ("C-002", "Globex, Inc.", "USD"),
    ("C-003", "Initech GmbH", "EUR"),
    ("C-004", "Umbrella Trading Co.", "USD"),
    ("C-005", "Stark Industrial", "USD"),
    ("C-006", "Wayne Logistics", "USD"),
    ("C-007", "Hooli Europe B.V.", "EUR"),
    ("C-008", "Lyon Optique SARL", "EUR"),
    ("C-009", "Tyrell Components", "USD"),
    ("C-010", "Oslo Marine AS", "EUR"),
    ("C-011", "上海星辰贸易有限公司", "CNY"),
    ("C-012", "北京华信科技有限公司", "CNY"),
    ("C-013", "深圳远航电子有限公司", "CNY"),
    ("C-014", "杭州青山茶业有限公司", "CNY"),
    ("C-015", "广州南方物流有限公司", "CNY"),
    ("C-016", "成都天府机械有限公司", "CNY"),
    ("C-017", "苏州锦绣纺织有限公司", "CNY"),
    ("C-018", "武汉长江化工有限公司", "CNY"),
    ("C-019", "南京金陵医疗器械有限公司", "CNY"),
    ("C-020", "天津港湾贸易有限公司", "CNY"),
    ("C-021", "重庆山城汽配有限公司", "CNY"),
    ("C-022", "厦门海峡进出口有限公司", "CNY"),
    ("C-023", "青岛蓝海食品有限公司", "CNY"),
    ("C-024", "西安古城文化传媒有限公司", "CNY"),
]

ORDERS = 240                 # SO-10001 … SO-10240
IN_ORDER_SYSTEM = range(1, 201)
IN_SALES = range(120, 241)   # 120 … 200 overlap with the order system; 201 … 240 only in sales
FINANCE_ONLY = ["SO-10901", "SO-10902"]

FIELDS = ["order_id", "customer_id", "customer", "amount", "currency", "status", "created_at", "updated_at", "paid_at"]


def order_id(n):
    return f"SO-{10000 + n}"


def money(cents):
    """1234.50 as text from integer cents (no float)."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def grouped(cents):
    """1,234.50 from integer cents."""
    whole, frac = divmod(cents, 100)
    return f"{whole:,}.{frac:02d}"


def epoch(moment):
    return int(moment.timestamp())


def iso(moment):
    return moment.isoformat(timespec="seconds")


def full_width(text):
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else ("\u3000" if c == " " else c) for c in text)


class Rows:
    """Rows of one export, with what the intake must make of each (good record or bad row)."""

    def __init__(self, file):
        self.file = file
        self.rows = []          # (cells or record, expectation)
        self.records = []       # good records: dict of cleaned field values + order of input
        self.bad = []           # (row, line, [kinds])
        self.blank = 0

    def add(self, cells, record=None, bad=None):
        self.rows.append((cells, record, bad))


def build(rng):
    """Every order's true history and each source's rows."""
    orders = {}
    for n in range(1, ORDERS + 1):
        customer_id, customer, currency = CUSTOMERS[rng.randrange(len(CUSTOMERS))]
        created = DAY + timedelta(minutes=rng.randrange(7 * 60, 22 * 60), seconds=rng.choice([0, 0, 0, 17, 42]))
        orders[n] = {
            "order_id": order_id(n),
            "customer_id": customer_id,
            "customer": customer,
            "currency": currency,
            "amount": rng.randrange(200_00, 35_000_00, 5),
            "created": created,
            "status": rng.choice(["new", "confirmed", "confirmed"]),
        }
    return orders


def main():
    rng = random.Random(SEED)
    orders = build(rng)
    records = []   # every good record: {"file", "source", "row", "line", "updated", fields...}
    bad = []       # every bad row: {"file", "row", "line", "kinds"}

    # ------------------------------------------------------------ the order system
    os_rows = []   # (cells, record-or-None, bad-kinds-or-None)
    os_updated = {}
    for n in IN_ORDER_SYSTEM:
        o = orders[n]
        updated = o["created"] + timedelta(minutes=rng.randrange(1, 120))
        os_updated[n] = updated
        cents = o["amount"]
        style = rng.randrange(4)
        if o["currency"] == "CNY":
            amount = [grouped(cents), f"¥{grouped(cents)}", money(cents), f"{money(cents)} 元"][style]
        else:
            amount = [grouped(cents), f"{o['currency']} {grouped(cents)}", money(cents), grouped(cents)][style]
        customer = o["customer"]
        if n % 17 == 0 and customer.isascii():
            customer = full_width(customer)
        elif n % 13 == 0:
            customer = f"  {customer} "
        created_text = iso(o["created"]) if n % 3 else iso(o["created"].astimezone(timezone.utc)).replace("+00:00", "Z")
        cells = [o["order_id"], o["customer_id"], customer, amount, o["currency"].lower() if n % 11 == 0 else o["currency"],
                 o["status"], created_text, iso(updated)]
        record = dict(order_id=o["order_id"], customer_id=o["customer_id"], customer=o["customer"], amount=money(cents),
                      currency=o["currency"], status=o["status"], created_at=epoch(o["created"]), updated_at=epoch(updated))
        os_rows.append((cells, record, None))
    # Exact duplicate rows (an export that repeated some lines).
    for n in [10, 50, 150]:
        os_rows.append(os_rows[n - 1])
    dirty = [
        (["", "C-003", "Initech GmbH", "980.00", "EUR", "new", "2026-12-01T09:00:00+08:00", "2026-12-01T09:05:00+08:00"], ["no_order_id"]),
        (["   ", "C-011", "上海星辰贸易有限公司", "1,200.00", "CNY", "new", "2026-12-01T10:00:00+08:00", ""], ["no_order_id"]),
        (["SO-9001", "C-001", "ACME Ltd", "N/A", "USD", "new", "2026-12-01T11:00:00+08:00", ""], ["bad_amount"]),
        (["SO-9002", "C-002", "Globex, Inc.", "12,34.5", "USD", "new", "2026-12-01T11:10:00+08:00", ""], ["bad_amount"]),
        (["SO-9003", "C-012", "北京华信科技有限公司", "5600", "CNY", "new", "2026-02-30 10:00", ""], ["bad_time"]),
        (["SO-9004", "C-013", "深圳远航电子有限公司", "700.00", "CNY", "new", "2026-12-01 25:61", ""], ["bad_time"]),
        (["SO-9005", "C-005", "Stark Industrial", "1234.567", "USD", "new", "2026-12-01T12:00:00+08:00", ""], ["bad_amount"]),
        (["SO-9006", "C-006", "Wayne Logistics", "450.00", "Dollars", "new", "2026-12-01T12:30:00+08:00", ""], ["bad_currency"]),
        (["SO-9007", "C-009", "Tyrell Components", "USD 100.00", "CNY", "new", "2026-12-01T13:00:00+08:00", ""], ["currency_mismatch"]),
        (["", "", "", "abc", "", "", "someday", ""], ["no_order_id", "bad_amount", "bad_time"]),
    ]
    for cells, kinds in dirty:
        at = rng.randrange(len(os_rows) + 1)
        os_rows.insert(at, (cells, None, kinds))
    header = ["order_id", "customer_id", "customer_name", "total_amount", "currency", "status", "created_at", "updated_at"]
    lines = [",".join(header)]
    for row, (cells, record, kinds) in enumerate(os_rows, start=1):
        lines.append(",".join(csv_cell(cell, ",") for cell in cells))
        place = {"file": "order_system.csv", "source": "order_system", "row": row, "line": row + 1}
        if kinds:
            bad.append({**place, "kinds": kinds})
        else:
            records.append({**place, **record})
    write_bytes("order_system.csv", ("\ufeff" + "\n".join(lines) + "\n").encode("utf-8"))

    # ------------------------------------------------------------ sales (GBK, Chinese headers)
    sales_rows = []
    sales_newer = set(rng.sample(range(120, 201), 15))
    sales_older_different = set(rng.sample(sorted(set(range(120, 201)) - sales_newer), 10))
    # Creation times moved by five minutes, far from midnight in any zone from UTC to UTC+8.
    movable = [n for n in sorted(set(range(120, 201)) - sales_newer - sales_older_different) if 9 <= orders[n]["created"].hour < 21]
    created_moved = set(rng.sample(movable, 5))
    twice = [205, 230]
    for n in IN_SALES:
        o = orders[n]
        cents = o["amount"]
        created = o["created"]
        if n in created_moved:
            created = created + timedelta(minutes=5)
        if n in os_updated:
            if n in sales_newer:
                updated = os_updated[n] + timedelta(minutes=rng.randrange(30, 300))
                cents = cents - cents // 20 // 5 * 5          # a 5% discount agreed later
                o["amount"] = cents
            elif n in sales_older_different:
                updated = o["created"] + (os_updated[n] - o["created"]) / 2
                cents = cents + 1000                           # an older price, replaced by the order system's
            else:
                updated = o["created"] + (os_updated[n] - o["created"]) / 2
        else:
            updated = o["created"] + timedelta(minutes=rng.randrange(1, 90))
        updated = updated.replace(microsecond=0)
        sales_rows.append(sales_row(rng, o, cents, created, updated, n))
        if n in twice:
            later = updated + timedelta(minutes=45)
            o["amount"] = cents + 2000
            sales_rows.append(sales_row(rng, o, o["amount"], created, later, n))
    # Rows naming an order id of another order (another customer id or creation date), beside the
    # order's own rows, so that most of the order's records agree on its identity.
    conflicting = rng.sample(sorted(set(range(120, 201)) - sales_newer - sales_older_different - created_moved), 6)
    for i, n in enumerate(conflicting):
        o = dict(orders[n])
        if i < 4:
            o["customer_id"] = CUSTOMERS[(int(o["customer_id"][2:]) + 5) % len(CUSTOMERS)][0]
            created = o["created"]
        else:
            created = o["created"] + timedelta(days=1)
        row = sales_row(rng, o, o["amount"], created, created + timedelta(minutes=3), n)
        row = (row[0], None, ["conflicting_id"])
        sales_rows.insert(rng.randrange(len(sales_rows) + 1), row)
    sales_dirty = [
        (["", "C-014", "杭州青山茶业有限公司", "￥3,000.00", "人民币", "2026/12/01 09:30", "2026/12/01 09:30", ""], ["no_order_id"]),
        (["SO-9101", "C-015", "广州南方物流有限公司", "待定", "人民币", "2026/12/01 10:30", "2026/12/01 10:30", "价格待定"], ["bad_amount"]),
        (["SO-9102", "C-016", "成都天府机械有限公司", "8,800.00 元", "人民币", "2026年13月1日", "2026/12/01 10:30", ""], ["bad_time"]),
    ]
    for cells, kinds in sales_dirty:
        sales_rows.insert(rng.randrange(len(sales_rows) + 1), (cells, None, kinds))
    blank_at = rng.randrange(len(sales_rows) + 1)
    sales_rows.insert(blank_at, ([""] * 8, None, "blank"))
    header = ["订单编号", "客户编号", "客户名称", "金额", "币种", "创建时间", "更新时间", "备注"]
    lines = [";".join(header)]
    blank_rows = 0
    for row, (cells, record, kinds) in enumerate(sales_rows, start=1):
        lines.append(";".join(csv_cell(cell, ";") for cell in cells))
        place = {"file": "sales.csv", "source": "sales", "row": row, "line": row + 1}
        if kinds == "blank":
            blank_rows += 1
        elif kinds:
            bad.append({**place, "kinds": kinds})
        else:
            records.append({**place, **record})
    write_bytes("sales.csv", ("\n".join(lines) + "\n").encode("gbk"))

    # ------------------------------------------------------------ finance (JSON)
    fin_items = []
    paid = sorted(rng.sample(range(1, ORDERS + 1), 150))
    fee = set(rng.sample(paid, 5))
    latest = {}
    for rec in records:
        n = int(rec["order_id"][3:]) - 10000
        if rec.get("updated_at") is not None:
            latest[n] = max(latest.get(n, 0), rec["updated_at"])
    for n in paid:
        o = orders[n]
        paid_at = datetime.fromtimestamp(latest[n], SHANGHAI) + timedelta(minutes=rng.randrange(10, 600))
        cents = o["amount"] - (1500 if n in fee else 0)     # a bank fee taken off the payment
        item = {"orderId": o["order_id"]}
        if rng.random() < 0.8:
            item["customerId"] = o["customer_id"]
        style = rng.randrange(3)
        if style == 0:
            item["totalAmount"] = RawNumber(money(cents))
        elif style == 1:
            item["totalAmount"] = f"{o['currency']} {grouped(cents)}"
        else:
            item["totalAmount"] = money(cents)
        item["currency"] = o["currency"]
        item["status"] = "paid"
        item["paidAt"] = epoch(paid_at) * 1000
        item["updatedAt"] = epoch(paid_at) * 1000
        record = dict(order_id=o["order_id"], amount=money(cents), currency=o["currency"], status="paid",
                      paid_at=epoch(paid_at), updated_at=epoch(paid_at))
        if "customerId" in item:
            record["customer_id"] = o["customer_id"]
        fin_items.append((item, record, None))
    for i, oid in enumerate(FINANCE_ONLY):
        moment = DAY + timedelta(hours=20 + i)
        item = {"orderId": oid, "customerId": "C-024", "totalAmount": RawNumber("660.00"), "currency": "CNY",
                "status": "paid", "paidAt": epoch(moment) * 1000, "updatedAt": epoch(moment) * 1000}
        record = dict(order_id=oid, customer_id="C-024", amount="660.00", currency="CNY", status="paid",
                      paid_at=epoch(moment), updated_at=epoch(moment))
        fin_items.append((item, record, None))
    # Rows naming another customer for an order that the order system and sales agree on.
    both = [n for n in range(120, 201) if n in paid and n not in conflicting]
    for n in rng.sample(both, 2):
        o = orders[n]
        item = {"orderId": o["order_id"], "customerId": "C-099", "totalAmount": RawNumber(money(o["amount"])),
                "currency": o["currency"], "status": "paid", "paidAt": epoch(DAY) * 1000 + 86_400_000}
        fin_items.insert(rng.randrange(len(fin_items) + 1), (item, None, ["conflicting_id"]))
    fin_dirty = [
        ("n/a", ["not_an_object"]),
        ({"customerId": "C-001", "totalAmount": RawNumber("100.00"), "currency": "USD", "paidAt": epoch(DAY) * 1000}, ["no_order_id"]),
        ({"orderId": "", "totalAmount": RawNumber("100.00"), "currency": "USD"}, ["no_order_id"]),
        ({"orderId": "SO-9201", "totalAmount": "abc", "currency": "CNY"}, ["bad_amount"]),
        ({"orderId": "SO-9202", "totalAmount": RawNumber("10.00"), "currency": "CNY", "paidAt": "yesterday"}, ["bad_time"]),
    ]
    for item, kinds in fin_dirty:
        fin_items.insert(rng.randrange(len(fin_items) + 1), (item, None, kinds))
    lines = ['{"exportedAt": "2026-12-02T06:00:00+08:00", "system": "finance", "records": [']
    for row, (item, record, kinds) in enumerate(fin_items, start=1):
        comma = "," if row < len(fin_items) else ""
        lines.append(dump(item) + comma)
        place = {"file": "finance.json", "source": "finance", "row": row, "line": row + 1}
        if kinds:
            bad.append({**place, "kinds": kinds})
        else:
            records.append({**place, **record})
    lines.append("]}")
    write_bytes("finance.json", ("\n".join(lines) + "\n").encode("utf-8"))

    write_text("mapping.toml", MAPPING)
    write_expected(records, bad, {"order_system.csv": 0, "sales.csv": blank_rows, "finance.json": 0})
    write_emails(random.Random(SEED + 1))


def sales_row(rng, o, cents, created, updated, n):
    local_created = created.astimezone(SHANGHAI)
    local_updated = updated.astimezone(SHANGHAI)
    style = rng.randrange(3)
    time_format = ["%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y年%m月%d日 %H:%M:%S"][style]
    if o["currency"] == "CNY":
        amount = [f"￥{grouped(cents)}", f"{money(cents)} 元", grouped(cents)][rng.randrange(3)]
        currency = rng.choice(["人民币", "CNY", "元"])
    else:
        amount = [f"{o['currency']} {grouped(cents)}", grouped(cents), money(cents)][rng.randrange(3)]
        currency = {"USD": "美元", "EUR": "欧元"}[o["currency"]] if rng.random() < 0.5 else o["currency"]
    remark = rng.choice(["", "", "加急", "月结客户", "请开增值税专用发票"])
    cells = [o["order_id"], o["customer_id"], o["customer"], amount, currency,
             local_created.strftime(time_format), local_updated.strftime(time_format), remark]
    record = dict(order_id=o["order_id"], customer_id=o["customer_id"], customer=o["customer"], amount=money(cents),
                  currency=o["currency"], created_at=epoch(created), updated_at=epoch(updated))
    return (cells, record, None)


class RawNumber(str):
    """A JSON number written from its exact text."""


def dump(value):
    if isinstance(value, RawNumber):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {dump(v)}" for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=False)


def csv_cell(cell, delimiter):
    if delimiter in cell or '"' in cell or "\n" in cell:
        return '"' + cell.replace('"', '""') + '"'
    return cell


def write_bytes(name, data):
    path = OUT / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_text(name, text):
    write_bytes(name, text.encode("utf-8"))


MAPPING = """# How flowbot intake reads the example exports (docs/intake.md describes every key).
# The order system and finance need nothing here: their headers are common ones, their times
# carry zones, and their sources follow from their file names.

[[file]]
name = "sales*.csv"
source = "sales"
time_zone = "Asia/Shanghai"   # the sales system writes local times without a zone
[file.columns]
"币种" = "currency"           # not one of the built-in headers
"备注" = "ignore"             # remarks: not needed by the process
"""


def write_expected(records, bad, blank_rows):
    """The aligned orders as the rules make them: per order id, the records agreeing with the
    identity most of them name; per field the newest record's value (by update time, ties to
    the earlier file and row), conflicts where an older record had another value."""
    files = ["order_system.csv", "sales.csv", "finance.json"]
    by_id = {}
    for rec in records:
        by_id.setdefault(rec["order_id"], []).append(rec)
    orders = []
    for oid, recs in by_id.items():
        recs.sort(key=lambda r: (files.index(r["file"]), r["row"]))
        ranked = sorted(recs, key=lambda r: -(r.get("updated_at") or -1))   # stable: ties keep input order
        order = {"order_id": oid}
        conflicts = []
        for field in FIELDS[1:]:
            values = [r[field] for r in ranked if r.get(field) is not None]
            order[field] = values[0] if values else None
            if field != "updated_at" and any(v != values[0] for v in values[1:]):
                conflicts.append(field)
        for field in ["created_at", "updated_at", "paid_at"]:
            if order[field] is not None:
                order[field] = iso(datetime.fromtimestamp(order[field], SHANGHAI))
        order["paid"] = order["paid_at"] is not None
        order["sources"] = [{"file": r["file"], "row": r["row"]} for r in recs]
        order["conflicts"] = conflicts
        orders.append(order)
    rows = {f: sum(1 for r in records + bad if r["file"] == f) for f in files}
    expected = {
        "files": [{"file": f, "rows": rows[f], "bad_rows": sum(1 for b in bad if b["file"] == f),
                   "blank_rows": blank_rows[f]} for f in files],
        "bad_rows": sorted(bad, key=lambda b: (files.index(b["file"]), b["row"])),
        "orders": sorted(orders, key=lambda o: o["order_id"]),
    }
    text = json.dumps(expected, ensure_ascii=False, indent=1) + "\n"
    write_text("expected/intake.json", text)


# ---------------------------------------------------------------- e-mails

EN_ITEMS = ["steel brackets", "LED panels", "pallet jacks", "safety helmets", "copper cables", "hydraulic pumps"]
ZH_ITEMS = ["不锈钢支架", "LED面板", "液压泵", "安全帽", "铜芯电缆", "包装纸箱"]
EN_PEOPLE = ["John Miller", "Sarah Chen", "Tom Becker", "Anna Rossi", "David Park"]
ZH_PEOPLE = ["王磊", "李娜", "张伟", "刘洋", "陈静"]


def money_en(cents, currency, rng):
    return {
        "USD": rng.choice([f"${grouped(cents)}", f"USD {grouped(cents)}"]),
        "EUR": rng.choice([f"€{grouped(cents)}", f"EUR {grouped(cents)}"]),
        "CNY": rng.choice([f"CNY {grouped(cents)}", f"¥{grouped(cents)}", f"RMB {grouped(cents)}"]),
    }[currency]


def money_zh(cents, currency, rng):
    return {
        "USD": f"美元 {grouped(cents)}",
        "EUR": f"欧元 {grouped(cents)}",
        "CNY": rng.choice([f"人民币 {grouped(cents)} 元", f"{grouped(cents)}元", f"￥{grouped(cents)}"]),
    }[currency]


def bare(cents):
    return grouped(cents)


EN_TEMPLATES = [
    "Subject: New order {id}\n\nHello,\n\n{customer} would like to place order {id} for {qty} {item}. "
    "The total comes to {money} as per your quote.\n\nBest regards,\n{person}\nPurchasing, {customer}\n",
    "Subject: Purchase order {id}\n\nHi team,\n\nPlease process purchase order {id} for {customer}: "
    "{qty} {item}, amount due {money}.\n\nThanks,\n{person}\n",
    "Dear Sales,\n\nWe confirm our order {id} ({qty} x {item}). Total: {money}. Please invoice {customer}.\n\n"
    "Kind regards,\n{person}\n",
]
ZH_TEMPLATES = [
    "您好：\n\n我司{customer}现下订单，订单号 {id}，共 {qty} 件{item}，合计{money}。请尽快安排发货。\n\n谢谢！\n{person}\n",
    "王经理：\n\n{customer}订购{item}{qty}件，订单编号：{id}，总金额 {money}，请确认。\n\n{person}\n",
    "各位好，\n\n客户{customer}的订单 {id} 已确认：{item} {qty} 件，金额 {money}。\n\n{person}\n",
]
MX_TEMPLATES = [
    "Hi {zh_person},\n\nOrder {id} from {customer}: {qty} units of {item}, total {money}. 请确认交期。\n\nThanks,\n{person}\n",
    "您好 {person},\n\nPlease find our PO {id} attached. 客户：{customer}，金额：{money}。\n\nBest,\n{zh_person}\n",
]
EN_MISSING = {
    "order_id": "Hello,\n\n{customer} needs {qty} {item} as discussed, total {money}. "
                "Please confirm and send the order number.\n\nRegards,\n{person}\n",
    "total": "Subject: Order {id}\n\nHi,\n\nPlease book order {id} for {customer}: {qty} {item}. "
             "We will confirm the price separately.\n\nThanks,\n{person}\n",
}
ZH_MISSING = {
    "customer": "您好：\n\n订单号 {id}，{item} {qty} 件，合计{money}。请安排发货。\n\n{person}\n",
    "currency": "王经理：\n\n{customer}订单 {id}，{item}{qty}件，总价 {bare}，请确认。\n\n{person}\n",
}
MX_MISSING = {
    "order_id": "Hi {zh_person},\n\n{customer} 想订 {qty} units of {item}, total {money}. 订单号稍后提供。\n\nThanks,\n{person}\n",
}


def write_emails(rng):
    plan = ([("en", None)] * 7 + [("en", "order_id"), ("en", "total")]
            + [("zh", None)] * 7 + [("zh", "customer"), ("zh", "currency")]
            + [("mx", None)] * 3 + [("mx", "order_id")])
    counters = {"en": 0, "zh": 0, "mx": 0}
    for language, missing in plan:
        counters[language] += 1
        name = f"{language}{counters[language]:02d}"
        customer_id, customer, currency = CUSTOMERS[rng.randrange(len(CUSTOMERS))]
        if language == "zh":
            customer_id, customer, currency = CUSTOMERS[10 + rng.randrange(14)]
        cents = rng.randrange(500_00, 50_000_00, 50)
        oid = rng.choice([f"SO-2026-{rng.randrange(1000, 9999)}", f"PO#{rng.randrange(1000, 9999)}",
                          f"ORD-{rng.randrange(100000, 999999)}"])
        fill = {
            "id": oid,
            "customer": customer,
            "qty": rng.choice([20, 50, 120, 200, 300, 500]),
            "item": rng.choice(ZH_ITEMS if language == "zh" else EN_ITEMS),
            "person": rng.choice(ZH_PEOPLE if language == "zh" else EN_PEOPLE),
            "zh_person": rng.choice(ZH_PEOPLE),
            "money": (money_zh if language == "zh" else money_en)(cents, currency, rng),
            "bare": bare(cents),
        }
        if missing is None:
            template = rng.choice({"en": EN_TEMPLATES, "zh": ZH_TEMPLATES, "mx": MX_TEMPLATES}[language])
        else:
            template = {"en": EN_MISSING, "zh": ZH_MISSING, "mx": MX_MISSING}[language][missing]
        expected = {"order_id": oid, "customer": customer, "total": cents / 100, "currency": currency}
        if missing == "total":
            expected["total"] = None
            expected["currency"] = None
        elif missing is not None:
            expected[missing] = None
        write_text(f"emails/{name}.txt", template.format(**fill))
        write_text(f"emails/{name}.expected.json", json.dumps(expected, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write the example ERP exports and e-mails.")
    parser.add_argument("--out", type=Path, help="write here instead of beside this script")
    arguments = parser.parse_args()
    if arguments.out:
        OUT = arguments.out
    main()
