use crate::split::Ratio;
use crate::{augment, build, generate, BuildConfig, Example, Language, Order};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashSet;
use std::path::Path;

fn read_split(dir: &Path, name: &str) -> Vec<Example> {
    std::fs::read_to_string(dir.join(name))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn config(out: &Path, seed: u64, augment: usize) -> BuildConfig {
    BuildConfig {
        synthetic: 150,
        emails_per_order: 2,
        ratio: Ratio::default(),
        seed,
        augment,
        out: out.to_path_buf(),
        ..BuildConfig::default()
    }
}

fn file_bytes(dir: &Path) -> Vec<Vec<u8>> {
    ["train.jsonl", "dev.jsonl", "test.jsonl", "stats.json"]
        .iter()
        .map(|name| std::fs::read(dir.join(name)).unwrap())
        .collect()
}

#[test]
fn the_same_inputs_and_seed_give_the_same_files_and_another_seed_another_split() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    build(&config(&a, 7, 1)).unwrap();
    build(&config(&b, 7, 1)).unwrap();
    assert_eq!(file_bytes(&a), file_bytes(&b));
    build(&config(&c, 8, 1)).unwrap();
    assert_ne!(
        read_split(&a, "test.jsonl"),
        read_split(&c, "test.jsonl"),
        "a different seed splits differently"
    );
}

#[test]
fn splits_are_disjoint_stratified_and_eight_one_one() {
    let dir = tempfile::tempdir().unwrap();
    let report = build(&config(dir.path(), 3, 2)).unwrap();
    let parts: Vec<Vec<Example>> = ["train.jsonl", "dev.jsonl", "test.jsonl"]
        .iter()
        .map(|name| read_split(dir.path(), name))
        .collect();
    let mut ids = HashSet::new();
    let mut texts = HashSet::new();
    for example in parts.iter().flatten() {
        assert!(ids.insert(example.id.clone()), "id {} twice", example.id);
        assert!(texts.insert(example.text.clone()), "a text twice");
    }
    let originals = |part: &[Example], language: Language| {
        part.iter()
            .filter(|e| !e.augmented && e.language == language)
            .count()
    };
    for language in Language::ALL {
        let (train, dev, test) = (
            originals(&parts[0], language),
            originals(&parts[1], language),
            originals(&parts[2], language),
        );
        let total = train + dev + test;
        assert!(total >= 20, "{language:?}: only {total} examples");
        // Each language on its own is cut 8:1:1 (rounded).
        assert_eq!(train, (total * 8 + 5) / 10, "{language:?}");
        assert_eq!(dev, (total + 5) / 10, "{language:?}");
    }
    assert_eq!(report.stats.train.examples, parts[0].len());
    assert_eq!(report.stats.dev.augmented + report.stats.test.augmented, 0);
}

#[test]
fn augmentation_adds_to_train_only() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, augmented) = (dir.path().join("plain"), dir.path().join("aug"));
    build(&config(&plain, 11, 0)).unwrap();
    let report = build(&config(&augmented, 11, 2)).unwrap();
    for name in ["dev.jsonl", "test.jsonl"] {
        assert_eq!(
            std::fs::read(plain.join(name)).unwrap(),
            std::fs::read(augmented.join(name)).unwrap(),
            "{name} changed by augmentation"
        );
    }
    let train = read_split(&augmented, "train.jsonl");
    let added = train.iter().filter(|e| e.augmented).count();
    assert!(added > train.len() / 3, "only {added} augmented");
    assert_eq!(report.stats.train.augmented, added);
    let plain_train = read_split(&plain, "train.jsonl");
    assert_eq!(
        plain_train,
        train
            .iter()
            .filter(|e| !e.augmented)
            .cloned()
            .collect::<Vec<_>>()
    );
}

/// The digits and currency words of a text, in order: what the total is read from.
fn amount_signs(text: &str) -> String {
    let currency = [
        "$", "¥", "￥", "€", "£", "元", "RMB", "USD", "EUR", "dollars", "euros",
    ];
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let signs: Vec<usize> = currency.iter().map(|c| text.matches(c).count()).collect();
    format!("{digits} {signs:?}")
}

#[test]
fn augmented_variants_keep_the_label_verbatim() {
    let mut rng = StdRng::seed_from_u64(5);
    let orders = generate::synthetic_orders(200, &mut rng);
    let mut variants = 0;
    for order in &orders {
        let (text, label) = generate::email(order, &mut rng).unwrap();
        for variant in augment::variants(&text, &label, 3, &mut rng) {
            variants += 1;
            assert_ne!(variant, text);
            assert!(
                variant.contains(label.order_id.as_deref().unwrap()),
                "{variant}"
            );
            assert!(
                variant.contains(label.customer.as_deref().unwrap()),
                "{variant}"
            );
            assert_eq!(
                amount_signs(&variant),
                amount_signs(&text),
                "{text}\n---\n{variant}"
            );
        }
    }
    assert!(variants > 400, "{variants} variants");
}

#[test]
fn generated_emails_state_their_label_among_distractors_in_every_language() {
    let mut rng = StdRng::seed_from_u64(1);
    let orders = generate::synthetic_orders(300, &mut rng);
    let mut languages = HashSet::new();
    let mut first_lines = HashSet::new();
    let mut with_distractor_ids = 0;
    let mut currency_word_first = 0;
    let mut bilingual_labels = 0;
    let mut name_run_into_verb = 0;
    let mut ids_with_hash = 0;
    for order in &orders {
        let (text, label) = generate::email(order, &mut rng).unwrap();
        let id = label.order_id.as_deref().unwrap();
        assert!(text.contains(id));
        assert!(text.contains(label.customer.as_deref().unwrap()));
        assert!(generate::CURRENCIES.contains(&label.currency.as_deref().unwrap()));
        let total = label.total.unwrap();
        let whole = (total.trunc() as u64).to_string();
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        assert!(digits.contains(&whole), "{total} not in {text}");
        languages.insert(Language::detect(&text));
        first_lines.insert(
            text.lines()
                .nth(2)
                .unwrap_or_default()
                .chars()
                .take(12)
                .collect::<String>(),
        );
        with_distractor_ids += usize::from(
            text.matches(|c: char| c.is_ascii_digit()).count() > id.len() + whole.len() + 4,
        );
        currency_word_first += usize::from(
            ["欧元 ", "英镑 ", "日元 ", "港币 ", "澳元 "]
                .iter()
                .any(|word| text.contains(&format!("{word}{}", &whole[..1]))),
        );
        bilingual_labels += usize::from(text.contains("Customer:") && text.contains("客户名称"));
        let customer = label.customer.as_deref().unwrap();
        name_run_into_verb += usize::from(
            ["确认", "订购", "订单号", "下单"]
                .iter()
                .any(|verb| text.contains(&format!("{customer}{verb}"))),
        );
        ids_with_hash += usize::from(id.contains('#'));
    }
    assert!(
        name_run_into_verb > 0,
        "no Chinese company name run into the verb after it"
    );
    assert!(ids_with_hash > 0, "no order id written with '#'");
    assert!(
        currency_word_first > 0,
        "no currency written before its amount in Chinese"
    );
    assert!(bilingual_labels > 0, "no e-mail with bilingual labels");
    assert_eq!(languages.len(), 3, "{languages:?}");
    assert!(
        first_lines.len() >= 12,
        "only {} layouts",
        first_lines.len()
    );
    assert!(
        with_distractor_ids > 150,
        "{with_distractor_ids} e-mails with other numbers"
    );
}

#[test]
fn sources_are_read_and_bad_items_reported_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let emails = dir.path().join("emails");
    std::fs::create_dir(&emails).unwrap();
    std::fs::write(
        emails.join("a.txt"),
        "Order ＳＯ－１ from ACME Ltd, total $5.00",
    )
    .unwrap();
    std::fs::write(
        emails.join("a.expected.json"),
        r#"{"order_id": "ＳＯ－１", "customer": "ACME Ltd", "total": 5.0, "currency": "USD"}"#,
    )
    .unwrap();
    std::fs::write(emails.join("b.txt"), "No label for me").unwrap();
    std::fs::write(emails.join("c.txt"), "   \n\t ").unwrap();
    std::fs::write(
        emails.join("c.expected.json"),
        r#"{"order_id": null, "customer": null, "total": null, "currency": null}"#,
    )
    .unwrap();
    let corrections = dir.path().join("corrections.jsonl");
    std::fs::write(
        &corrections,
        concat!(
            r#"{"input": "PO 77 for Initech GmbH, 12 EUR", "model_output": {"order_id": "77"}, "corrected": {"order_id": "PO 77", "customer": "Initech GmbH", "total": 12, "currency": "EUR"}}"#,
            "\n\nnot json\n",
            r#"{"input": "Order 1 from Globex", "corrected": {"order_id": "2", "customer": "Globex"}}"#,
            "\n",
        ),
    )
    .unwrap();
    let orders = dir.path().join("orders.jsonl");
    std::fs::write(
        &orders,
        concat!(
            r#"{"order_id": "SO-9", "customer": "Wayne Logistics", "amount": 100.5, "currency": "usd"}"#,
            "\n",
            r#"{"order_id": "SO-10", "customer": "Wayne Logistics", "amount": 3, "currency": "XAU"}"#,
            "\n",
            r#"{"order_id": "SO-11", "amount": 3}"#,
            "\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let report = build(&BuildConfig {
        orders: Some(orders.clone()),
        corrections: Some(corrections.clone()),
        emails: vec![emails.clone()],
        emails_per_order: 1,
        ratio: Ratio::default(),
        out: out.clone(),
        ..BuildConfig::default()
    })
    .unwrap();
    let dropped: Vec<String> = report
        .stats
        .dropped
        .iter()
        .map(|p| format!("{}: {}", p.source, p.reason))
        .collect();
    let expect = [
        format!(
            "{}:3: an order to write e-mails from needs customer, currency",
            orders.display()
        ),
        format!(
            "{}:2: no e-mail written: currency \"XAU\"",
            orders.display()
        ),
        format!("{}:3: not JSON", corrections.display()),
        format!(
            "{}:4: the label's order_id `2` is not in the text",
            corrections.display()
        ),
        format!("{}: no label", emails.join("b.txt").display()),
        format!("{}: empty text", emails.join("c.txt").display()),
    ];
    for expected in &expect {
        assert!(
            dropped.iter().any(|d| d.starts_with(expected.as_str())),
            "missing `{expected}` in {dropped:#?}"
        );
    }
    assert_eq!(dropped.len(), expect.len(), "{dropped:#?}");
    let all: Vec<Example> = ["train.jsonl", "dev.jsonl", "test.jsonl"]
        .iter()
        .flat_map(|name| read_split(&out, name))
        .collect();
    assert_eq!(all.len(), 3);
    let labelled = all.iter().find(|e| e.source.ends_with("a.txt")).unwrap();
    assert_eq!(labelled.text, "Order SO-1 from ACME Ltd, total $5.00");
    assert_eq!(labelled.output.order_id.as_deref(), Some("SO-1"));
    let correction = all.iter().find(|e| e.text.starts_with("PO 77")).unwrap();
    assert_eq!(
        correction.output,
        Order {
            order_id: Some("PO 77".into()),
            customer: Some("Initech GmbH".into()),
            total: Some(12.0),
            currency: Some("EUR".into()),
        }
    );
    assert_eq!(report.stats.inputs.get("generated"), Some(&1));
}

#[test]
fn duplicates_are_kept_once() {
    let dir = tempfile::tempdir().unwrap();
    let emails = dir.path().join("emails");
    std::fs::create_dir(&emails).unwrap();
    for name in ["a", "b"] {
        // The same text up to whitespace and full-width forms.
        let text = if name == "a" {
            "Order X-1  from Foo"
        } else {
            "Order Ｘ－1 from Foo\n"
        };
        std::fs::write(emails.join(format!("{name}.txt")), text).unwrap();
        std::fs::write(
            emails.join(format!("{name}.expected.json")),
            r#"{"order_id": "X-1", "customer": "Foo", "total": null, "currency": null}"#,
        )
        .unwrap();
    }
    let report = build(&BuildConfig {
        emails: vec![emails],
        out: dir.path().join("out"),
        ..BuildConfig::default()
    })
    .unwrap();
    assert_eq!(report.stats.duplicates, 1);
    let kept = report.stats.train.examples + report.stats.dev.examples + report.stats.test.examples;
    assert_eq!(kept, 1);
}

#[test]
fn split_ratios_are_read_or_refused() {
    assert_eq!(
        "7:1:2".parse::<Ratio>().unwrap(),
        Ratio {
            train: 7,
            dev: 1,
            test: 2
        }
    );
    for bad in ["8:1", "8:1:1:1", "a:b:c", "0:1:1", "8:1:0", ""] {
        assert!(bad.parse::<Ratio>().is_err(), "{bad}");
    }
}
