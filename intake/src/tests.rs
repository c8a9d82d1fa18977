//! Whole-file tests: bytes through [`read_bytes`] and [`align`], one test per rule.

use super::*;
use serde_json::{json, Value as Json};

fn options() -> Options {
    Options::default()
}

fn with_mapping(toml: &str) -> Options {
    Options {
        mapping: Mapping::from_toml(toml).expect("test mapping"),
        ..Options::default()
    }
}

fn read(name: &str, bytes: &[u8], options: &Options) -> FileRead {
    read_bytes(name, bytes, options).unwrap_or_else(|e| panic!("{e}"))
}

/// An aligned batch, with each order also as JSON (amounts in the JSON went through a float
/// there, so amounts are checked on the orders themselves).
struct Aligned {
    orders: Vec<Order>,
    json: Vec<Json>,
    report: Report,
}

impl Aligned {
    fn index(&self, order_id: &str) -> usize {
        self.orders
            .iter()
            .position(|order| order.order_id() == order_id)
            .unwrap_or_else(|| panic!("no order {order_id}"))
    }

    /// A field of an order, as JSON.
    fn get(&self, order_id: &str, name: &str) -> &Json {
        &self.json[self.index(order_id)][name]
    }

    /// An order's amount as its exact text.
    fn amount(&self, order_id: &str) -> String {
        self.orders[self.index(order_id)]
            .get(Field::Amount)
            .map_or_else(|| "null".to_string(), Value::text)
    }

    fn ids(&self) -> Vec<&str> {
        self.orders.iter().map(Order::order_id).collect()
    }
}

fn batch(files: Vec<FileRead>, sort_by: SortBy) -> Aligned {
    let Batch { orders, report } = align(files, sort_by);
    let json = orders
        .iter()
        .map(|order| serde_json::to_value(order).expect("order serializes"))
        .collect();
    Aligned {
        orders,
        json,
        report,
    }
}

fn one_file(name: &str, bytes: &[u8], options: &Options) -> Aligned {
    batch(vec![read(name, bytes, options)], SortBy::Created)
}

#[test]
fn utf8_csv_with_bom_and_english_headers() {
    let text = "\u{FEFF}Order ID,Customer Name,Total Amount,Currency,Created At\nSO-1,ACME Ltd,\"1,234.5\",usd,2026-12-01 08:00\n";
    let file = read("orders.csv", text.as_bytes(), &options());
    assert_eq!(
        (
            file.report.encoding.as_str(),
            file.report.bom,
            file.report.delimiter.as_deref()
        ),
        ("UTF-8", true, Some(","))
    );
    let aligned = batch(vec![file], SortBy::Created);
    assert_eq!(aligned.json[0]["order_id"], "SO-1");
    assert_eq!(aligned.json[0]["customer"], "ACME Ltd");
    assert_eq!(aligned.amount(aligned.orders[0].order_id()), "1234.50");
    assert_eq!(aligned.json[0]["currency"], "USD");
    assert_eq!(aligned.json[0]["created_at"], "2026-12-01T08:00:00Z");
}

#[test]
fn gbk_csv_with_chinese_headers_is_detected() {
    let text =
        "订单编号;客户编号;客户名称;金额;创建时间\nSO-8;C-8;上海星辰贸易有限公司;￥1,234.5;2026年12月1日 08:30\n";
    let (bytes, _, unmappable) = encoding_rs::GBK.encode(text);
    assert!(!unmappable);
    let options = Options {
        time_zone: Tz::Asia__Shanghai,
        ..Options::default()
    };
    let file = read("销售.csv", &bytes, &options);
    assert_eq!(
        (
            file.report.encoding.as_str(),
            file.report.delimiter.as_deref()
        ),
        ("gb18030", Some(";"))
    );
    assert_eq!(file.report.source, "sales");
    let aligned = batch(vec![file], SortBy::Created);
    assert_eq!(aligned.json[0]["customer"], "上海星辰贸易有限公司");
    assert_eq!(aligned.json[0]["customer_id"], "C-8");
    assert_eq!(aligned.amount(aligned.orders[0].order_id()), "1234.50");
    assert_eq!(aligned.json[0]["currency"], "CNY");
    assert_eq!(aligned.json[0]["created_at"], "2026-12-01T08:30:00+08:00");
}

/// Every amount form the order case names comes out exact with two places and its currency,
/// and every time form lands on the same instant in the one target zone.
#[test]
fn each_amount_form_is_exact_and_each_time_form_lands_in_the_target_zone() {
    // 2026-12-01 08:00 in Shanghai is 1796083200 seconds after the epoch.
    let rows = [
        ("SO-1", "1,234.5", None, "2026-12-01T08:00:00+08:00"),
        ("SO-2", "¥1,234.50", Some("CNY"), "2026-12-01T00:00:00Z"),
        ("SO-3", "￥1,234.5", Some("CNY"), "2026/12/01 08:00"),
        ("SO-4", "1234.50 元", Some("CNY"), "2026年12月1日 08:00"),
        ("SO-5", "USD 1,234.50", Some("USD"), "1796083200"),
    ];
    let mut csv = String::from("order_id,amount,created_at\n");
    for (id, amount, _, time) in rows {
        csv.push_str(&format!("{id},\"{amount}\",{time}\n"));
    }
    let options = Options {
        time_zone: Tz::Asia__Shanghai,
        ..Options::default()
    };
    let aligned = one_file("orders.csv", csv.as_bytes(), &options);
    assert_eq!(aligned.report.totals.bad_rows, 0, "{:?}", aligned.report);
    for (id, written, currency, time) in rows {
        assert_eq!(aligned.amount(id), "1234.50", "{written}");
        assert_eq!(
            aligned.get(id, "currency").as_str(),
            currency,
            "currency of {written}"
        );
        assert_eq!(
            aligned.get(id, "created_at"),
            "2026-12-01T08:00:00+08:00",
            "{time}"
        );
    }
    // A date alone (年月日) is midnight in the zone.
    let date_only = one_file(
        "orders.csv",
        "order_id,created_at\nSO-6,2026年12月1日\n".as_bytes(),
        &options,
    );
    assert_eq!(
        date_only.get("SO-6", "created_at"),
        "2026-12-01T00:00:00+08:00"
    );
}

/// A GB18030 file with a character GBK does not have (four bytes in GB18030) is detected and
/// named; a mapping that names GB18030 reads it too, and one that names UTF-8 refuses it with
/// the line.
#[test]
fn gb18030_beyond_gbk_is_detected_and_named() {
    let text = "order_id,customer,amount\nSO-9,㐀星贸易,88.8\n";
    let (bytes, _, unmappable) = encoding_rs::GB18030.encode(text);
    assert!(!unmappable);
    assert!(
        encoding_rs::GBK.encode(text).2,
        "the text must hold a character outside GBK"
    );
    let file = read("orders.csv", &bytes, &options());
    assert_eq!(file.report.encoding, "gb18030");
    let aligned = batch(vec![file], SortBy::Created);
    assert_eq!(aligned.get("SO-9", "customer"), "㐀星贸易");
    assert_eq!(aligned.amount("SO-9"), "88.80");
    let named = read(
        "orders.csv",
        &bytes,
        &with_mapping("[defaults]\nencoding = \"gb18030\"\n"),
    );
    assert_eq!(named.report.encoding, "gb18030");
    let err = read_bytes(
        "orders.csv",
        &bytes,
        &with_mapping("[defaults]\nencoding = \"utf-8\"\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn the_mapping_names_encoding_delimiter_columns_source_decimal_comma_date_format_and_zone() {
    let mapping = r#"
[[file]]
name = "export_*.txt"
source = "finance"
encoding = "gbk"
delimiter = "|"
decimal_separator = ","
date_format = "%d.%m.%Y %H:%M"
time_zone = "Europe/Berlin"
currency = "EUR"
[file.columns]
"单号" = "order_id"
"币种" = "currency"
"状态" = "status"
"备注" = "ignore"
"#;
    let text = "单号|金额|币种|状态|支付时间|备注\nF-1|1.234,50 €|欧元|已付|01.12.2026 09:00|x\nF-2|12,5||待付||\n";
    let (bytes, _, _) = encoding_rs::GBK.encode(text);
    let file = read("in/export_1.txt", &bytes, &with_mapping(mapping));
    assert_eq!(file.report.source, "finance");
    assert_eq!(file.report.encoding, "GBK");
    assert_eq!(file.report.time_zone, "Europe/Berlin");
    assert_eq!(file.report.ignored_columns, ["备注"]);
    let columns: Vec<(&str, &str)> = file
        .report
        .columns
        .iter()
        .map(|(f, h)| (f.name(), h.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("order_id", "单号"),
            ("amount", "金额"),
            ("currency", "币种"),
            ("status", "状态"),
            ("paid_at", "支付时间")
        ]
    );
    let aligned = batch(vec![file], SortBy::Created);
    assert!(
        aligned.report.bad_rows.is_empty(),
        "{:?}",
        aligned.report.bad_rows
    );
    assert_eq!(aligned.amount("F-1"), "1234.50");
    assert_eq!(aligned.get("F-1", "currency"), "EUR");
    assert_eq!(aligned.get("F-1", "status"), "已付");
    assert_eq!(aligned.get("F-1", "paid_at"), "2026-12-01T08:00:00Z");
    assert_eq!(aligned.get("F-1", "paid"), true);
    assert_eq!(aligned.amount("F-2"), "12.50");
    assert_eq!(
        aligned.get("F-2", "currency"),
        "EUR",
        "the mapping's default currency"
    );
    assert_eq!(aligned.get("F-2", "paid"), false);
}

#[test]
fn tab_and_pipe_delimited_files_are_sniffed() {
    for (delimiter, name) in [("\t", "a.tsv"), ("|", "b.csv")] {
        let text = ["order_id", "amount"].join(delimiter)
            + "\n"
            + &["SO-1", "1,000"].join(delimiter)
            + "\n";
        let file = read(name, text.as_bytes(), &options());
        assert_eq!(file.report.delimiter.as_deref(), Some(delimiter));
        assert_eq!(
            file.records[0].get(Field::Amount),
            Some(&Value::Amount("1000.00".parse().unwrap()))
        );
    }
}

#[test]
fn json_object_holding_an_array_with_exact_numbers_and_epoch_times() {
    let text = r#"{"exported_at": "2026-12-02", "records": [
        {"orderId": "SO-1", "customerId": "C-1", "totalAmount": 1234.50, "paidAt": 1796112000000, "createdAt": 1796100000},
        {"orderId": "SO-2", "totalAmount": 0.1, "currency": "CNY", "status": null},
        {"orderId": "SO-3", "totalAmount": 1e2}
    ]}"#;
    let file = read("finance.json", text.as_bytes(), &options());
    assert_eq!(file.report.format, Format::Json);
    let aligned = batch(vec![file], SortBy::Created);
    assert!(aligned.report.bad_rows.is_empty());
    let line = serde_json::to_string(&aligned.orders[0]).unwrap();
    assert!(line.contains(r#""amount":1234.50,"#), "{line}");
    assert_eq!(aligned.get("SO-1", "paid_at"), "2026-12-01T08:00:00Z");
    assert_eq!(aligned.get("SO-1", "created_at"), "2026-12-01T04:40:00Z");
    assert_eq!(aligned.amount("SO-2"), "0.10");
    assert_eq!(aligned.amount("SO-3"), "100.00");
}

#[test]
fn jsonl_is_read_by_extension_and_by_content() {
    let text =
        "{\"order_id\": \"SO-1\", \"amount\": \"¥12\"}\nnot json\n{\"order_id\": \"SO-2\"}\n";
    for name in ["orders.jsonl", "orders.ndjson", "orders"] {
        let file = read(name, text.as_bytes(), &options());
        assert_eq!(file.report.format, Format::Jsonl, "{name}");
        assert_eq!(file.records.len(), 2);
        assert_eq!(
            (
                file.bad_rows[0].row,
                file.bad_rows[0].line,
                file.bad_rows[0].problems[0].kind()
            ),
            (2, 2, "not_json")
        );
    }
}

#[test]
fn full_width_text_and_whitespace_are_cleaned() {
    let text = "order_id,customer,amount,status\n　ＳＯ－１　,  ＡＣＭＥ　　Ｌｔｄ ,￥１２３．４,  confirmed \n";
    let aligned = one_file("orders.csv", text.as_bytes(), &options());
    assert_eq!(aligned.json[0]["order_id"], "SO-1");
    assert_eq!(aligned.json[0]["customer"], "ACME Ltd");
    assert_eq!(aligned.amount(aligned.orders[0].order_id()), "123.40");
    assert_eq!(aligned.json[0]["status"], "confirmed");
}

#[test]
fn bad_rows_are_reported_with_file_row_line_and_every_reason_and_good_rows_go_through() {
    let text = "order_id,amount,currency,created_at\n\
                SO-1,10,CNY,2026-12-01\n\
                ,11,CNY,2026-12-01\n\
                SO-3,12.3x,CNY,2026-12-01\n\
                SO-4,13,CNY,2026-02-30\n\
                ,abc,Dollars,someday\n\
                SO-6,USD 14,CNY,2026-12-01\n\
                SO-7,12.345,,\n\
                SO-8,15,,2026-12-01\n";
    let aligned = one_file("orders.csv", text.as_bytes(), &options());
    assert_eq!(aligned.ids(), ["SO-1", "SO-8"]);
    let bad: Vec<(&str, usize, usize, &str)> = aligned
        .report
        .bad_rows
        .iter()
        .map(|b| (b.file.as_str(), b.row, b.line, b.reason.as_str()))
        .collect();
    assert_eq!(
        bad,
        [
            ("orders.csv", 2, 3, "no order id"),
            ("orders.csv", 3, 4, "column `amount`: amount `12.3x` is not a number (decimal separator `.`)"),
            ("orders.csv", 4, 5, "column `created_at`: `2026-02-30` is not a date or time in a known format"),
            (
                "orders.csv",
                5,
                6,
                "no order id; column `currency`: `Dollars` is not a currency; column `amount`: amount `abc` is not a number (decimal separator `.`); column `created_at`: `someday` is not a date or time in a known format"
            ),
            ("orders.csv", 6, 7, "the amount is in USD but column `currency` says CNY"),
            ("orders.csv", 7, 8, "column `amount`: amount `12.345` has more than two decimal places"),
        ]
    );
    let kinds: Vec<&str> = aligned.report.bad_rows[3]
        .problems
        .iter()
        .map(Problem::kind)
        .collect();
    assert_eq!(
        kinds,
        ["no_order_id", "bad_currency", "bad_amount", "bad_time"]
    );
    assert_eq!(
        (
            aligned.report.totals.rows,
            aligned.report.totals.good_rows,
            aligned.report.totals.bad_rows
        ),
        (8, 2, 6)
    );
    assert_eq!(
        (
            aligned.report.files[0].rows,
            aligned.report.files[0].good_rows,
            aligned.report.files[0].bad_rows
        ),
        (8, 2, 6)
    );
}

#[test]
fn limits_make_clear_errors() {
    let small = Options {
        limits: Limits {
            max_file_bytes: 10,
            ..Limits::default()
        },
        ..Options::default()
    };
    let error = read_bytes("big.csv", b"order_id\nSO-1\nSO-2\n", &small).unwrap_err();
    assert_eq!(
        error.to_string(),
        "big.csv: 19 bytes, over the limit of 10 bytes"
    );
    let rows = Options {
        limits: Limits {
            max_rows: 1,
            ..Limits::default()
        },
        ..Options::default()
    };
    assert_eq!(
        read_bytes("r.csv", b"order_id\nSO-1\nSO-2\n", &rows)
            .unwrap_err()
            .to_string(),
        "r.csv: more than 1 rows"
    );
    let field = Options {
        limits: Limits {
            max_field_bytes: 8,
            ..Limits::default()
        },
        ..Options::default()
    };
    let file = read(
        "f.csv",
        b"order_id,customer\nSO-1,ACME\nSO-2,ACME Corporation\n",
        &field,
    );
    assert_eq!(file.records.len(), 1);
    assert_eq!(
        file.bad_rows[0].reason,
        "column `customer` is 16 bytes long, over the limit of 8"
    );
}

#[test]
fn unreadable_files_say_why() {
    let error =
        |name: &str, bytes: &[u8]| read_bytes(name, bytes, &options()).unwrap_err().to_string();
    assert_eq!(error("a.csv", b""), "a.csv: the file is empty");
    assert_eq!(
        error("a.json", b"[[1]]"),
        "a.json: no column gives the order id (columns: none); map one to `order_id` in the mapping"
    );
    assert_eq!(
        error("a.csv", b"id,amount\n1,2\n"),
        "a.csv: no column gives the order id (columns: id, amount); map one to `order_id` in the mapping"
    );
    assert_eq!(
        error("a.json", b"{\"a\": 1"),
        "a.json: line 1, column 7: not JSON: EOF while parsing an object at line 1 column 7"
    );
    assert_eq!(
        error("a.csv", b"order_id\n\xFF\xFF\n"),
        "a.csv: line 2: not UTF-8, and not GBK/GB18030 either; name the encoding in the mapping"
    );
}

/// Three sources of one order: the order system (oldest), sales (newest, no customer name) and
/// finance (in between, no update time on one row).
fn three_sources() -> Vec<FileRead> {
    let order_system =
        "order_id,customer_id,customer,amount,currency,status,created_at,updated_at\n\
                        SO-1,C-1,ACME Ltd,1000,CNY,new,2026-12-01T08:00:00Z,2026-12-01T08:00:00Z\n\
                        SO-2,C-2,Globex,50,CNY,new,2026-12-01T07:00:00Z,2026-12-01T07:00:00Z\n";
    let sales = "order_id,customer_id,amount,status,created_at,updated_at\n\
                 SO-1,C-1,1200,confirmed,2026-12-01T08:05:00Z,2026-12-01T10:00:00Z\n";
    let finance = r#"[{"order_id": "SO-1", "amount": "1,100.00", "paid_at": "2026-12-01T09:00:00Z", "updated_at": "2026-12-01T09:00:00Z"},
                      {"order_id": "SO-2", "customer_id": "C-2", "amount": "50.00", "paid_at": "2026-12-01T11:00:00Z"}]"#;
    vec![
        read("order_system.csv", order_system.as_bytes(), &options()),
        read("sales.csv", sales.as_bytes(), &options()),
        read("finance.json", finance.as_bytes(), &options()),
    ]
}

#[test]
fn conflicting_sources_are_resolved_field_by_field_by_update_time() {
    let aligned = batch(three_sources(), SortBy::Created);
    assert!(
        aligned.report.bad_rows.is_empty(),
        "{:?}",
        aligned.report.bad_rows
    );
    assert_eq!(aligned.amount("SO-1"), "1200.00", "sales is newest");
    assert_eq!(aligned.get("SO-1", "status"), "confirmed");
    assert_eq!(
        aligned.get("SO-1", "customer"),
        "ACME Ltd",
        "filled from the order system"
    );
    assert_eq!(aligned.get("SO-1", "currency"), "CNY");
    assert_eq!(
        aligned.get("SO-1", "paid_at"),
        "2026-12-01T09:00:00Z",
        "filled from finance"
    );
    assert_eq!(aligned.get("SO-1", "updated_at"), "2026-12-01T10:00:00Z");
    assert_eq!(aligned.get("SO-1", "created_at"), "2026-12-01T08:05:00Z");
    let intake = aligned.get("SO-1", "intake");
    let sources: Vec<(&str, u64)> = intake["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["source"].as_str().unwrap(), s["row"].as_u64().unwrap()))
        .collect();
    assert_eq!(sources, [("order_system", 1), ("sales", 1), ("finance", 1)]);
    let order = &aligned.orders[aligned.index("SO-1")];
    let amount = order
        .conflicts
        .iter()
        .find(|c| c.field == Field::Amount)
        .expect("amount conflict");
    assert_eq!(
        (amount.kept.text(), amount.from.source.as_str()),
        ("1200.00".to_string(), "sales")
    );
    let replaced: Vec<(String, &str)> = amount
        .replaced
        .iter()
        .map(|r| (r.value.text(), r.from.source.as_str()))
        .collect();
    assert_eq!(
        replaced,
        [
            ("1100.00".to_string(), "finance"),
            ("1000.00".to_string(), "order_system")
        ]
    );
    let line = serde_json::to_string(order).unwrap();
    assert!(
        line.contains(r#"{"field":"amount","kept":1200.00,"#),
        "{line}"
    );
    let conflicted: Vec<&str> = intake["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(conflicted, ["amount", "status", "created_at"]);
    // SO-2: finance has no update time, so the order system's record is newer; same values agree.
    assert_eq!(aligned.get("SO-2", "intake")["conflicts"], json!([]));
    assert_eq!(aligned.get("SO-2", "paid"), true);
    assert_eq!(
        (
            aligned.report.totals.orders,
            aligned.report.totals.merged_orders,
            aligned.report.totals.conflicts
        ),
        (2, 2, 3)
    );
}

#[test]
fn every_aligned_order_has_the_same_fields() {
    let aligned = batch(three_sources(), SortBy::Created);
    let only = read("x.csv", b"order_id\nSO-9\n", &options());
    let lone = batch(vec![only], SortBy::Created);
    let keys = |order: &Json| {
        order
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    let expected = [
        "order_id",
        "customer_id",
        "customer",
        "amount",
        "currency",
        "status",
        "created_at",
        "updated_at",
        "paid_at",
        "paid",
        "intake",
    ];
    for order in aligned.json.iter().chain(&lone.json) {
        assert_eq!(keys(order), expected);
    }
    assert_eq!(lone.json[0]["amount"], Json::Null);
    assert_eq!(lone.json[0]["paid"], false);
}

#[test]
fn the_same_identity_gives_the_same_key_and_a_record_without_customer_id_joins_its_order() {
    let aligned = batch(three_sources(), SortBy::Created);
    let alone = read(
        "o.csv",
        b"order_id,customer_id,created_at\nSO-1,C-1,2026-12-01T23:00:00Z\n",
        &options(),
    );
    let lone = batch(vec![alone], SortBy::Created);
    let key = aligned.get("SO-1", "intake")["key"].as_str().unwrap();
    assert_eq!(key.len(), 16);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        lone.json[0]["intake"]["key"], key,
        "same order id, customer id and creation day"
    );
    assert_ne!(aligned.get("SO-2", "intake")["key"], key);
}

#[test]
fn duplicates_with_conflicting_ids_are_reported_and_the_first_kept() {
    let first =
        "order_id,customer_id,amount,created_at\nSO-1,C-1,10,2026-12-01T08:00:00Z\nSO-2,C-2,20,2026-12-01T08:00:00Z\n";
    let second = "order_id,customer_id,amount,created_at\n\
                  SO-1,C-9,11,2026-12-01T09:00:00Z\n\
                  SO-2,C-2,21,2026-12-03T08:00:00Z\n\
                  SO-1,,12,\n";
    let aligned = batch(
        vec![
            read("a.csv", first.as_bytes(), &options()),
            read("b.csv", second.as_bytes(), &options()),
        ],
        SortBy::Created,
    );
    assert_eq!(aligned.ids(), ["SO-1", "SO-2"]);
    let bad: Vec<(&str, usize, &str, &str)> = aligned
        .report
        .bad_rows
        .iter()
        .map(|b| {
            (
                b.file.as_str(),
                b.row,
                b.problems[0].kind(),
                b.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        bad,
        [
            (
                "b.csv",
                1,
                "conflicting_id",
                "order SO-1 has customer id C-9 here but C-1 in a.csv row 1"
            ),
            (
                "b.csv",
                2,
                "conflicting_id",
                "order SO-2 has creation date 2026-12-03 here but 2026-12-01 in a.csv row 2"
            ),
        ]
    );
    assert_eq!(aligned.get("SO-1", "customer_id"), "C-1");
    assert_eq!(
        aligned.get("SO-1", "intake")["sources"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "b.csv row 3 joins SO-1"
    );
    assert_eq!(aligned.amount("SO-2"), "20.00");
    assert_eq!(
        (
            aligned.report.files[1].rows,
            aligned.report.files[1].good_rows,
            aligned.report.files[1].bad_rows
        ),
        (3, 1, 2)
    );
    assert_eq!(
        (
            aligned.report.totals.good_rows,
            aligned.report.totals.bad_rows
        ),
        (3, 2)
    );
}

#[test]
fn the_identity_most_records_agree_on_wins_whatever_the_file_order() {
    let odd = "order_id,customer_id,amount\nSO-1,C-9,10\n";
    let sales = "order_id,customer_id,amount\nSO-1,C-1,11\n";
    let finance = "order_id,customer_id,paid_at\nSO-1,C-1,2026-12-01T09:00:00Z\n";
    let files = [
        ("odd.csv", odd),
        ("sales.csv", sales),
        ("finance.csv", finance),
    ];
    for order in [[0, 1, 2], [1, 2, 0], [2, 0, 1]] {
        let read_all = order
            .iter()
            .map(|&i| read(files[i].0, files[i].1.as_bytes(), &options()))
            .collect();
        let aligned = batch(read_all, SortBy::Created);
        let bad: Vec<(&str, &str)> = aligned
            .report
            .bad_rows
            .iter()
            .map(|b| (b.file.as_str(), b.problems[0].kind()))
            .collect();
        assert_eq!(bad, [("odd.csv", "conflicting_id")], "{order:?}");
        assert_eq!(aligned.get("SO-1", "customer_id"), "C-1");
        assert_eq!(
            aligned.amount("SO-1"),
            "11.00",
            "the odd row's amount is not merged"
        );
    }
}

#[test]
fn sorted_by_each_time_with_missing_times_last_and_ties_stable() {
    let text = "order_id,created_at,updated_at,paid_at\n\
                A,2026-12-01T10:00:00Z,2026-12-01T11:00:00Z,\n\
                B,2026-12-01T08:00:00Z,2026-12-01T12:00:00Z,2026-12-01T09:00:00Z\n\
                C,2026-12-01T09:00:00Z,2026-12-01T09:30:00Z,2026-12-01T08:30:00Z\n\
                D,,2026-12-01T09:30:00Z,\n\
                E,2026-12-01T09:00:00Z,,2026-12-01T09:00:00Z\n";
    for (sort_by, expected) in [
        (SortBy::Created, ["B", "C", "E", "A", "D"]),
        (SortBy::Updated, ["C", "D", "A", "B", "E"]),
        (SortBy::Paid, ["C", "B", "E", "A", "D"]),
    ] {
        let aligned = batch(vec![read("o.csv", text.as_bytes(), &options())], sort_by);
        assert_eq!(aligned.ids(), expected, "{sort_by:?}");
        assert_eq!(aligned.report.sorted_by, sort_by);
    }
}

#[test]
fn times_go_into_the_target_zone_and_zone_less_ones_are_read_in_the_source_zone() {
    let mapping =
        "[defaults]\ntime_zone = \"Asia/Shanghai\"\n[[file]]\nname = \"utc*\"\ntime_zone = \"UTC\"";
    let options = Options {
        time_zone: Tz::America__New_York,
        ..with_mapping(mapping)
    };
    let text = "order_id,created_at,paid_at\nSO-1,2026-12-01 08:00,2026-12-01T08:00:00Z\n";
    let aligned = batch(
        vec![read("local.csv", text.as_bytes(), &options)],
        SortBy::Created,
    );
    assert_eq!(aligned.json[0]["created_at"], "2026-11-30T19:00:00-05:00");
    assert_eq!(aligned.json[0]["paid_at"], "2026-12-01T03:00:00-05:00");
    let aligned = batch(
        vec![read("utc.csv", text.as_bytes(), &options)],
        SortBy::Created,
    );
    assert_eq!(aligned.json[0]["created_at"], "2026-12-01T03:00:00-05:00");
    assert_eq!(aligned.report.files[0].time_zone, "UTC");
    // Without a zone in the mapping, zone-less times are read in the target zone.
    let plain = Options {
        time_zone: Tz::Asia__Shanghai,
        ..Options::default()
    };
    let aligned = batch(
        vec![read("x.csv", text.as_bytes(), &plain)],
        SortBy::Created,
    );
    assert_eq!(aligned.json[0]["created_at"], "2026-12-01T08:00:00+08:00");
}

#[test]
fn report_serializes_with_totals_files_and_bad_rows() {
    let text = "order_id,amount\nSO-1,1\n,2\n";
    let report = one_file("o.csv", text.as_bytes(), &options()).report;
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["totals"]["rows"], 2);
    assert_eq!(json["sorted_by"], "created");
    assert_eq!(
        json["files"][0]["columns"],
        json!({"order_id": "order_id", "amount": "amount"})
    );
    assert_eq!(
        json["bad_rows"][0],
        json!({"file": "o.csv", "source": "o", "row": 2, "line": 3, "reason": "no order id",
               "problems": [{"kind": "no_order_id", "message": "no order id"}]})
    );
}

/// A small deterministic generator, so the no-panic check needs no extra crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    const SPECIAL: &[u8] = b"\",;\n{}[]\x80";
    let seeds: [&[u8]; 4] = [
        b"order_id;amount;created_at\nSO-1;\"1,2\";2026-12-01\n",
        b"[{\"orderId\": \"A\", \"totalAmount\": 1e400, \"paidAt\": 99999999999999}]",
        "{\"order_id\": \"A\"}\n{\"订单号\": \"B\", \"金额\": \"￥-\"}\n".as_bytes(),
        b"\xEF\xBB\xBForder_id,paid_at\n\"A\"\"\",(1)\n",
    ];
    let mut random = XorShift(0x9E37_79B9_7F4A_7C15);
    let names = ["x.csv", "x.json", "x.jsonl", "x"];
    let limits = Limits {
        max_rows: 50,
        max_columns: 8,
        max_field_bytes: 32,
        ..Limits::default()
    };
    let options = Options {
        limits,
        ..Options::default()
    };
    for round in 0..2000 {
        let mut bytes = seeds[round % seeds.len()].to_vec();
        for _ in 0..=(random.next() % 6) {
            let at = (random.next() as usize) % (bytes.len() + 1);
            match random.next() % 3 {
                0 if at < bytes.len() => bytes[at] = random.next() as u8,
                1 => bytes.insert(at, SPECIAL[(random.next() as usize) % SPECIAL.len()]),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        if let Ok(file) = read_bytes(names[round % names.len()], &bytes, &options) {
            let batch = align(vec![file], SortBy::Paid);
            serde_json::to_string(&batch.report).expect("report serializes");
            for order in &batch.orders {
                serde_json::to_string(order).expect("order serializes");
            }
        }
    }
}
