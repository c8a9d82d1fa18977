//! Realistic order e-mails written from structured orders.
//!
//! Each e-mail states the order's id, customer and total (in one of the many ways people write
//! amounts and currencies) among distractors a reader must not take for them: quantities, phone
//! numbers, delivery dates, a contact person beside the company, a previous order's id, quoted
//! replies. Layouts, greetings and signatures vary, in English, Chinese and both, so a model
//! cannot learn one layout. Everything is drawn from a seeded generator: the same orders and seed
//! give the same e-mails.

use crate::example::Order;
use rand::seq::SliceRandom;
use rand::Rng;

/// Currencies the extraction step knows (its schema's enum).
pub const CURRENCIES: [&str; 8] = ["CNY", "USD", "EUR", "GBP", "JPY", "HKD", "CHF", "AUD"];

/// An e-mail written for `order` (whose four fields are all set), and the label it states: the
/// order's fields as they appear in the text. `None` when the order's currency is not one of
/// [`CURRENCIES`].
pub fn email(order: &Order, rng: &mut impl Rng) -> Option<(String, Order)> {
    let order_id = order.order_id.as_deref()?;
    let customer = order.customer.as_deref()?;
    let total = order.total?;
    let currency = order.currency.as_deref()?;
    if !CURRENCIES.contains(&currency) || !total.is_finite() || total <= 0.0 {
        return None;
    }
    let total = if currency == "JPY" {
        total.round()
    } else {
        (total * 100.0).round() / 100.0
    };
    let style = *[Style::English, Style::Chinese, Style::Mixed].choose(rng)?;
    let fill = Fill {
        id: order_id,
        customer,
        amount: &amount_text(total, currency, style, rng),
        qty: rng.gen_range(2..=500),
        item: ITEMS.choose(rng)?,
        item_zh: ITEMS_ZH.choose(rng)?,
        person: PEOPLE.choose(rng)?,
        person_zh: PEOPLE_ZH.choose(rng)?,
        date: format!(
            "2026-{:02}-{:02}",
            rng.gen_range(1..=12),
            rng.gen_range(1..=28)
        ),
        phone: format!(
            "+86 {} {:04} {:04}",
            rng.gen_range(20..=29),
            rng.gen_range(0..10_000),
            rng.gen_range(0..10_000)
        ),
        prev_id: previous_id(order_id, rng),
    };
    let (greetings, bodies, signatures) = match style {
        Style::English => (EN_GREETINGS, EN_BODIES, EN_SIGNATURES),
        Style::Chinese => (ZH_GREETINGS, ZH_BODIES, ZH_SIGNATURES),
        Style::Mixed => (MIXED_GREETINGS, MIXED_BODIES, MIXED_SIGNATURES),
    };
    let mut text = String::new();
    text.push_str(&fill.apply(greetings.choose(rng)?));
    text.push_str("\n\n");
    text.push_str(&fill.apply(bodies.choose(rng)?));
    text.push_str("\n\n");
    text.push_str(&fill.apply(signatures.choose(rng)?));
    if rng.gen_bool(0.2) {
        text.push_str("\n\n");
        text.push_str(&fill.apply(QUOTED_REPLIES.choose(rng)?));
    }
    let label = Order {
        order_id: Some(order_id.to_string()),
        customer: Some(customer.to_string()),
        total: Some(total),
        currency: Some(currency.to_string()),
    };
    Some((text, label))
}

/// `count` invented orders (ids, companies in English and Chinese, totals, currencies) to write
/// e-mails from when no intake orders are given, or beside them.
pub fn synthetic_orders(count: usize, rng: &mut impl Rng) -> Vec<Order> {
    (0..count)
        .map(|_| {
            let currency = *CURRENCIES.choose(rng).unwrap_or(&"USD");
            let total: f64 = if currency == "JPY" {
                rng.gen_range(1_000..5_000_000) as f64
            } else {
                rng.gen_range(1_000..50_000_000) as f64 / 100.0
            };
            Order {
                order_id: Some(synthetic_id(rng)),
                customer: COMPANIES.choose(rng).map(|c| c.to_string()),
                total: Some(total),
                currency: Some(currency.to_string()),
            }
        })
        .collect()
}

/// How an e-mail is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    English,
    Chinese,
    Mixed,
}

/// The values a template's `{placeholders}` take.
struct Fill<'a> {
    id: &'a str,
    customer: &'a str,
    amount: &'a str,
    qty: u32,
    item: &'a str,
    item_zh: &'a str,
    person: &'a str,
    person_zh: &'a str,
    date: String,
    phone: String,
    prev_id: String,
}

impl Fill<'_> {
    /// `template` with every placeholder replaced.
    fn apply(&self, template: &str) -> String {
        template
            .replace("{id}", self.id)
            .replace("{customer}", self.customer)
            .replace("{amount}", self.amount)
            .replace("{qty}", &self.qty.to_string())
            .replace("{item}", self.item)
            .replace("{item_zh}", self.item_zh)
            .replace("{person}", self.person)
            .replace("{person_zh}", self.person_zh)
            .replace("{date}", &self.date)
            .replace("{phone}", &self.phone)
            .replace("{prev_id}", &self.prev_id)
            // A name ending in a period at the end of a sentence ("… Inc.") keeps one period.
            .replace("..", ".")
    }
}

/// The total as people write it: separators, decimals and the currency's signs and words.
fn amount_text(total: f64, currency: &str, style: Style, rng: &mut impl Rng) -> String {
    let cents = (total * 100.0).round() as u64;
    let (whole, fraction) = (cents / 100, cents % 100);
    let number = match rng.gen_range(0..6) {
        0 => format!("{}.{fraction:02}", grouped(whole, ',')),
        1 => format!("{whole}.{fraction:02}"),
        2 if currency == "EUR" || currency == "CHF" => {
            format!("{},{fraction:02}", grouped(whole, '.'))
        }
        3 if fraction == 0 => grouped(whole, ','),
        4 if fraction == 0 => whole.to_string(),
        _ => format!("{}.{fraction:02}", grouped(whole, ',')),
    };
    let english: &[&str] = match currency {
        "USD" => &["${n}", "USD {n}", "{n} USD", "US${n}", "{n} dollars"],
        "CNY" => &["¥{n}", "RMB {n}", "{n} CNY", "CNY {n}", "{n} RMB"],
        "EUR" => &["€{n}", "€ {n}", "{n} €", "EUR {n}", "{n} euros", "{n} EUR"],
        "GBP" => &["£{n}", "GBP {n}", "{n} pounds", "{n} GBP"],
        "JPY" => &["JPY {n}", "{n} yen", "{n} JPY"],
        "HKD" => &[
            "HK${n}",
            "HK$ {n}",
            "HKD {n}",
            "{n} HKD",
            "{n} Hong Kong dollars",
        ],
        "CHF" => &["CHF {n}", "{n} CHF", "{n} francs", "{n} Swiss francs"],
        _ => &["A${n}", "AUD {n}", "{n} AUD", "{n} Australian dollars"],
    };
    let chinese: &[&str] = match currency {
        "USD" => &["{n} 美元", "美元 {n}", "美金{n}", "美元 {n} 元", "USD {n}"],
        "CNY" => &[
            "{n} 元",
            "人民币 {n} 元",
            "￥{n}",
            "¥{n}",
            "{n}元",
            "RMB {n}",
        ],
        "EUR" => &["{n} 欧元", "{n}欧元", "欧元 {n}", "€{n}", "EUR {n}"],
        "GBP" => &["{n} 英镑", "英镑 {n}", "£{n}"],
        "JPY" => &["{n} 日元", "日元 {n}", "JPY {n}"],
        "HKD" => &[
            "{n} 港币",
            "港币 {n}",
            "港元{n}",
            "港币 {n} 元",
            "{n} 港元",
            "HK${n}",
        ],
        "CHF" => &["CHF {n}", "{n} 瑞士法郎", "瑞士法郎 {n}"],
        _ => &["{n} 澳元", "澳元 {n}", "AUD {n}"],
    };
    let forms = match style {
        Style::English => english,
        Style::Chinese => chinese,
        Style::Mixed => {
            if rng.gen_bool(0.5) {
                english
            } else {
                chinese
            }
        }
    };
    forms.choose(rng).unwrap_or(&"{n}").replace("{n}", &number)
}

/// `value` with `separator` between groups of three digits.
fn grouped(value: u64, separator: char) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(separator);
        }
        out.push(digit);
    }
    out
}

/// Another order id shaped like `id` (a distractor): its digits changed.
fn previous_id(id: &str, rng: &mut impl Rng) -> String {
    let changed: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_digit() && rng.gen_bool(0.6) {
                char::from(b'0' + rng.gen_range(0..10u8))
            } else {
                c
            }
        })
        .collect();
    if changed == id {
        format!("{id}-OLD")
    } else {
        changed
    }
}

/// An invented order id in one of the shapes ERP systems print.
fn synthetic_id(rng: &mut impl Rng) -> String {
    let letters = |rng: &mut _, n| -> String {
        (0..n)
            .map(|_| char::from(b'A' + Rng::gen_range(rng, 0..26u8)))
            .collect()
    };
    match rng.gen_range(0..8) {
        0 => format!("SO-{}", rng.gen_range(1_000..100_000)),
        6 => format!("PO#{}", rng.gen_range(1_000..100_000)),
        7 => format!(
            "{}-{}-{}",
            letters(rng, 2),
            rng.gen_range(10..100),
            rng.gen_range(1..100)
        ),
        1 => format!("PO{}", rng.gen_range(100_000..1_000_000)),
        2 => format!("{}-{}", letters(rng, 2), rng.gen_range(1_000..10_000)),
        3 => format!("2026-{:04}", rng.gen_range(0..10_000)),
        4 => format!(
            "ORD/{}/{:02}",
            rng.gen_range(1_000..10_000),
            rng.gen_range(1..100)
        ),
        _ => format!("{}-{}", rng.gen_range(1_000..10_000), letters(rng, 1)),
    }
}

const COMPANIES: &[&str] = &[
    "ACME Ltd",
    "Globex Corporation",
    "Initech GmbH",
    "Umbrella Trading Co.",
    "Wayne Logistics",
    "Stark Components Inc.",
    "Nordic Timber AB",
    "Delta Paper Corp",
    "Blue Harbor Foods",
    "Pioneer Medical Supplies",
    "Hooli Europe B.V.",
    "Sakura Precision K.K.",
    "Shenzhen Bright Parts Co.",
    "Hangzhou Lakeside Textiles Ltd",
    "上海华东电子有限公司",
    "北京启明科技有限公司",
    "深圳市南山精密机械有限公司",
    "广州白云纸业有限公司",
    "天津远洋物流有限公司",
    "成都天府食品有限公司",
    "苏州工业园区光电有限公司",
    "武汉长江钢材贸易有限公司",
    "Kiwi Fresh Exports Ltd",
    "Rheinland Pumpen AG",
    "Maple Leaf Hardware Inc.",
    "Sunrise Textiles Pvt. Ltd.",
    "Andes Copper S.A.",
    "重庆山城重工集团",
    "沈阳北方机床厂",
    "南昌赣江电子股份有限公司",
    "合肥新源贸易公司",
    "福州闽江茶叶商行",
    "西安古城建材总公司",
    "长沙湘江医疗器械研究所",
];
const ITEMS: &[&str] = &[
    "steel brackets",
    "LED panels",
    "reams of paper",
    "server racks",
    "safety helmets",
    "pallets of timber",
    "laptops",
    "cartons of gloves",
    "network switches",
    "office chairs",
];
const ITEMS_ZH: &[&str] = &[
    "箱打印纸",
    "台服务器",
    "件安全帽",
    "套办公桌椅",
    "卷电缆",
    "箱手套",
    "块LED面板",
];
const PEOPLE: &[&str] = &[
    "John Miller",
    "Amy Ross",
    "David Park",
    "Maria Gonzalez",
    "Erik Johansson",
    "Priya Nair",
    "Tom Becker",
    "Li Wei",
];
const PEOPLE_ZH: &[&str] = &["王芳", "李强", "陈明", "刘洋", "张伟", "赵敏", "周杰"];

const EN_GREETINGS: &[&str] = &[
    "Hello,",
    "Hi team,",
    "Dear Sales,",
    "Good morning,",
    "Dear Sir or Madam,",
];
const EN_BODIES: &[&str] = &[
    "{customer} would like to place order {id} for {qty} {item}. The total comes to {amount} as per your quote.",
    "Please process purchase order {id} for {customer}: {qty} x {item}, total {amount}. Delivery by {date}, please.",
    "Order number: {id}\nCustomer: {customer}\nItems: {qty} {item}\nTotal: {amount}",
    "We confirm our order {id} ({qty} {item}). Total: {amount}. Please invoice {customer}.",
    "This is {person} from {customer}. Following up on our call, we are ordering {qty} {item} under PO {id}; the amount is {amount}.",
    "Go ahead with {id} please: {qty} units of {item}, {amount} in total. This replaces our earlier order {prev_id}.\n\n{customer}",
    "PO {id} | {customer} | {amount}\n{qty} {item}, ship to our warehouse before {date}. Call me on {phone} if anything is unclear.",
    "{customer} would like to order {qty} {item}, PO {id}, total amount {amount}.",
    "As agreed in quotation {prev_id}, {customer} orders {qty} {item} under purchase order {id}. Price: {amount} net.",
    "Please book order #{id} placed by {customer}. The invoice total should be {amount} including freight.",
];
const EN_SIGNATURES: &[&str] = &[
    "Best regards,\n{person}\nPurchasing, {customer}",
    "Thanks,\n{person}",
    "Kind regards,\n{person}\nTel: {phone}",
    "Cheers,\n{person}",
    "Regards,\n{person}\nProcurement Manager",
];
const ZH_GREETINGS: &[&str] = &[
    "您好，",
    "你好！",
    "尊敬的销售部：",
    "{person_zh}经理，您好：",
];
const ZH_BODIES: &[&str] = &[
    "{customer}下单，订单号{id}，共{qty}{item_zh}，合计{amount}。谢谢！",
    "我司（{customer}）确认采购订单 {id}，数量{qty}{item_zh}，总金额{amount}，请于{date}前发货。",
    "订单编号：{id}\n客户：{customer}\n金额：{amount}\n联系电话：{phone}",
    "请处理{customer}的订单{id}，货款共计{amount}。此单替代之前的订单{prev_id}。",
    "现代表{customer}订购{qty}{item_zh}，订单号为{id}，总价{amount}，交货日期{date}。",
    "{customer}追加订单{id}：{qty}{item_zh}，总计{amount}，请安排{date}前送达。",
    "关于订单{id}：买方{customer}，应付总额{amount}（含运费），联系人{person_zh}。",
    "{customer}确认采购单 {id}，合计 {amount}，请于{date}前交货。",
    "{customer}订单号 {id}，{qty}{item_zh}，总额 {amount}。",
    "{customer}订购{qty}{item_zh}，订单号：{id}，货款合计{amount}。",
    "报价单 {prev_id} 已确认。现由{customer}正式下单，订单编号 {id}，金额 {amount}。",
    "我是{customer}的{person_zh}，今天下单 {id}，{qty}{item_zh}，共计{amount}。",
];
const ZH_SIGNATURES: &[&str] = &[
    "{person_zh}",
    "此致\n敬礼\n{person_zh}",
    "联系人：{person_zh} {phone}",
    "祝好！\n{person_zh}",
];
const MIXED_GREETINGS: &[&str] = &["Dear Sales,", "Hi {person_zh}经理,", "您好,", "Hello 各位,"];
const MIXED_BODIES: &[&str] = &[
    "我们 {customer} 下单 {id}，total {amount}。Please ship ASAP.",
    "Order {id} from {customer}: {qty} {item}, total {amount}. 请确认。",
    "Please confirm PO {id} for {customer}. 金额 {amount}, {qty} pcs, deliver by {date}. Thanks!",
    "{customer} 的订单 {id} (replaces {prev_id}), amount {amount}. 联系电话 {phone}.",
    "订单编号 Order ID: {id}\n客户名称 Customer: {customer}\n金额 Amount: {amount}\n交期 Delivery: {date}",
    "PO号 / PO No.: {id}；客户 / Client: {customer}；总价 / Total: {amount}",
    "Hi, this is {person_zh} from {customer}. 订单 {id} 的总额是 {amount}，please confirm.",
    "{customer}订单 {id} confirmed by {person}, 共 {qty} {item}, total {amount}.",
    "{customer} would like to order {qty} {item}, PO {id}, 总金额 {amount}.",
    "Order {id} for {customer}, {qty} {item}, total {amount}. 上次的订单 {prev_id} 已付款。",
    "{customer} 确认订单 {id}，共 {qty} 件，total {amount}。Thanks!",
];
const MIXED_SIGNATURES: &[&str] = &[
    "Best,\n{person}",
    "谢谢！\n{person_zh}",
    "Regards / 此致\n{person}",
];
const QUOTED_REPLIES: &[&str] = &[
    "> On {date}, {person} wrote:\n> Could you confirm the quantities for order {prev_id}?",
    "-----Original Message-----\nFrom: {person}\nSubject: quote {prev_id}\n\nPlease find our quote attached.",
    "> {date} {person_zh} 写道：\n> 请确认订单 {prev_id} 的数量。",
];
