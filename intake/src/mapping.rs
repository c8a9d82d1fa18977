//! The mapping file (TOML): per file (matched by name) which source it is, how it is written
//! (format, encoding, delimiter, date format, decimal separator, currency, time zone) and which
//! columns give which field, for headers the built-in lists do not know.
//!
//! ```toml
//! [defaults]                    # for every file
//! time_zone = "Asia/Shanghai"   # zone of times written without one
//!
//! [[file]]                      # the first entry whose name matches a file applies to it
//! name = "sales*.csv"           # glob on the file name (`*`, `?`, `[…]`)
//! source = "sales"              # else inferred from the file name
//! encoding = "gbk"              # else UTF-8 (BOM or not) or GB18030, detected
//! delimiter = ";"               # else sniffed: `,` `;` tab `|`
//! date_format = "%d.%m.%Y"      # tried before the common formats
//! decimal_separator = ","       # `1.234,50`
//! currency = "CNY"              # for amounts that name none
//! [file.columns]
//! "币种" = "currency"
//! "备注" = "ignore"
//! ```

use crate::fields::Field;
use crate::text::header_key;
use chrono::format::{Item, StrftimeItems};
use chrono_tz::Tz;
use encoding_rs::Encoding;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The export formats read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Delimited text with a header row.
    Csv,
    /// A JSON array of objects, or an object holding one.
    Json,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// `csv`, `json` or `jsonl`, as the mapping spells it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Jsonl => "jsonl",
        }
    }
}

/// What a mapped column gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// This field.
    Field(Field),
    /// Nothing: the column is ignored even if its header is a known one.
    Ignore,
}

/// How one file is read; `None` where the mapping says nothing (then detected or defaulted).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// The source system the file is an export of.
    pub source: Option<String>,
    /// The format (else from the extension or the content).
    pub format: Option<Format>,
    /// The text encoding (else UTF-8 with or without BOM, or GB18030).
    pub encoding: Option<&'static Encoding>,
    /// The CSV delimiter (else sniffed).
    pub delimiter: Option<u8>,
    /// A `strftime` format tried before the common date formats.
    pub date_format: Option<String>,
    /// `.` or `,` (default `.`).
    pub decimal_separator: Option<char>,
    /// The currency of amounts that name none (ISO code).
    pub currency: Option<String>,
    /// The zone of times written without one (default: the target zone).
    pub time_zone: Option<Tz>,
    /// For a JSON object holding several arrays: the key of the records.
    pub records: Option<String>,
    /// Columns by header (compared like the built-in headers), before the built-in lists.
    pub columns: Vec<(String, Column)>,
}

impl Settings {
    /// What a header maps to explicitly, if the settings name it.
    pub fn column(&self, header: &str) -> Option<Column> {
        let key = header_key(header);
        self.columns
            .iter()
            .find(|(mapped, _)| *mapped == key)
            .map(|(_, column)| *column)
    }

    /// These settings with `defaults` filling what they leave open.
    fn over(mut self, defaults: &Settings) -> Settings {
        self.source = self.source.or_else(|| defaults.source.clone());
        self.format = self.format.or(defaults.format);
        self.encoding = self.encoding.or(defaults.encoding);
        self.delimiter = self.delimiter.or(defaults.delimiter);
        self.date_format = self.date_format.or_else(|| defaults.date_format.clone());
        self.decimal_separator = self.decimal_separator.or(defaults.decimal_separator);
        self.currency = self.currency.or_else(|| defaults.currency.clone());
        self.time_zone = self.time_zone.or(defaults.time_zone);
        self.records = self.records.or_else(|| defaults.records.clone());
        self.columns.extend(defaults.columns.iter().cloned());
        self
    }
}

/// A mapping file, read and checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapping {
    defaults: Settings,
    files: Vec<(glob::Pattern, Settings)>,
}

/// A mapping file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// The file could not be read.
    #[error("cannot read the mapping {path}: {error}")]
    Io {
        /// The mapping's path.
        path: String,
        /// What went wrong.
        error: std::io::Error,
    },
    /// Not TOML, or keys the mapping does not know (the message has line and column).
    #[error("mapping: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value the mapping does not accept, and where it is.
    #[error("mapping {at}: {problem}")]
    Invalid {
        /// `[defaults]` or `[[file]] N (name)`.
        at: String,
        /// What is wrong.
        problem: MappingProblem,
    },
}

/// A value of the mapping that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingProblem {
    /// A `[[file]]` entry without `name`.
    #[error("`name` (a file name pattern) is missing")]
    NoName,
    /// `name` or `source` under `[defaults]`.
    #[error("`{0}` belongs in a `[[file]]` entry, not in `[defaults]`")]
    NotADefault(&'static str),
    /// A file name pattern that is not a glob.
    #[error("`{pattern}` is not a file name pattern: {message}")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// The glob error.
        message: String,
    },
    /// An encoding label encoding_rs does not know.
    #[error("unknown encoding `{0}` (e.g. utf-8, gbk, gb18030, windows-1252)")]
    UnknownEncoding(String),
    /// A delimiter that is not one ASCII character.
    #[error("delimiter must be one ASCII character or `tab`, not `{0}`")]
    BadDelimiter(String),
    /// A decimal separator other than `.` and `,`.
    #[error("decimal_separator must be `.` or `,`, not `{0}`")]
    BadDecimalSeparator(String),
    /// A `date_format` chrono cannot use.
    #[error("`{0}` is not a strftime date format")]
    BadDateFormat(String),
    /// A currency that is not a three-letter code.
    #[error("currency must be a three-letter ISO code, not `{0}`")]
    BadCurrency(String),
    /// A time zone the tz database does not know.
    #[error("unknown time zone `{0}` (an IANA name such as Asia/Shanghai or UTC)")]
    UnknownTimeZone(String),
    /// A column mapped to something that is not a field.
    #[error("column `{column}` maps to `{target}`, which is not a field (order_id, customer_id, customer, amount, currency, status, created_at, updated_at, paid_at, or ignore)")]
    UnknownField {
        /// The column header.
        column: String,
        /// What it was mapped to.
        target: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingToml {
    #[serde(default)]
    defaults: EntryToml,
    #[serde(default)]
    file: Vec<EntryToml>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryToml {
    name: Option<String>,
    source: Option<String>,
    format: Option<Format>,
    encoding: Option<String>,
    delimiter: Option<String>,
    date_format: Option<String>,
    decimal_separator: Option<String>,
    currency: Option<String>,
    time_zone: Option<String>,
    records: Option<String>,
    #[serde(default)]
    columns: BTreeMap<String, String>,
}

impl Mapping {
    /// Reads and checks a mapping file.
    pub fn load(path: &Path) -> Result<Mapping, MappingError> {
        let text = std::fs::read_to_string(path).map_err(|error| MappingError::Io {
            path: path.display().to_string(),
            error,
        })?;
        Mapping::from_toml(&text)
    }

    /// Parses and checks a mapping from TOML text.
    pub fn from_toml(text: &str) -> Result<Mapping, MappingError> {
        let parsed: MappingToml = toml::from_str(text)?;
        let invalid = |at: String| {
            move |problem| MappingError::Invalid {
                at: at.clone(),
                problem,
            }
        };
        if parsed.defaults.name.is_some() {
            return Err(invalid("[defaults]".into())(MappingProblem::NotADefault(
                "name",
            )));
        }
        if parsed.defaults.source.is_some() {
            return Err(invalid("[defaults]".into())(MappingProblem::NotADefault(
                "source",
            )));
        }
        let defaults = settings(parsed.defaults).map_err(invalid("[defaults]".into()))?;
        let mut files = Vec::with_capacity(parsed.file.len());
        for (index, mut entry) in parsed.file.into_iter().enumerate() {
            let at = format!(
                "[[file]] {}{}",
                index + 1,
                entry
                    .name
                    .as_ref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            );
            let name = entry
                .name
                .take()
                .ok_or(MappingProblem::NoName)
                .map_err(invalid(at.clone()))?;
            let pattern = glob::Pattern::new(&name)
                .map_err(|e| MappingProblem::BadPattern {
                    pattern: name.clone(),
                    message: e.msg.to_string(),
                })
                .map_err(invalid(at.clone()))?;
            files.push((pattern, settings(entry).map_err(invalid(at))?));
        }
        Ok(Mapping { defaults, files })
    }

    /// The settings for a file: the first `[[file]]` entry whose pattern matches the file's name
    /// (without folders), over `[defaults]`.
    pub fn settings_for(&self, file: &str) -> Settings {
        let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
        match self.files.iter().find(|(pattern, _)| pattern.matches(base)) {
            Some((_, settings)) => settings.clone().over(&self.defaults),
            None => self.defaults.clone(),
        }
    }
}

/// Checks one entry's values.
fn settings(entry: EntryToml) -> Result<Settings, MappingProblem> {
    let encoding = entry
        .encoding
        .map(|label| {
            Encoding::for_label(label.trim().as_bytes())
                .ok_or(MappingProblem::UnknownEncoding(label))
        })
        .transpose()?;
    let delimiter = entry
        .delimiter
        .map(|text| match text.as_str() {
            "tab" | "\t" => Ok(b'\t'),
            one if one.len() == 1 && one.is_ascii() && !matches!(one, "\"" | "\n" | "\r") => {
                Ok(one.as_bytes()[0])
            }
            _ => Err(MappingProblem::BadDelimiter(text)),
        })
        .transpose()?;
    let decimal_separator = entry
        .decimal_separator
        .map(|text| match text.as_str() {
            "." => Ok('.'),
            "," => Ok(','),
            _ => Err(MappingProblem::BadDecimalSeparator(text)),
        })
        .transpose()?;
    if let Some(format) = &entry.date_format {
        if format.is_empty() || StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
            return Err(MappingProblem::BadDateFormat(format.clone()));
        }
    }
    let currency = entry
        .currency
        .map(|code| {
            let upper = code.trim().to_ascii_uppercase();
            if upper.len() == 3 && upper.bytes().all(|b| b.is_ascii_uppercase()) {
                Ok(upper)
            } else {
                Err(MappingProblem::BadCurrency(code))
            }
        })
        .transpose()?;
    let time_zone = entry
        .time_zone
        .map(|name| {
            name.trim()
                .parse::<Tz>()
                .map_err(|_| MappingProblem::UnknownTimeZone(name))
        })
        .transpose()?;
    let columns = entry
        .columns
        .into_iter()
        .map(|(column, target)| {
            let mapped = match target.as_str() {
                "ignore" => Column::Ignore,
                name => Field::from_name(name).map(Column::Field).ok_or_else(|| {
                    MappingProblem::UnknownField {
                        column: column.clone(),
                        target: target.clone(),
                    }
                })?,
            };
            Ok((header_key(&column), mapped))
        })
        .collect::<Result<_, MappingProblem>>()?;
    Ok(Settings {
        source: entry.source,
        format: entry.format,
        encoding,
        delimiter,
        date_format: entry.date_format,
        decimal_separator,
        currency,
        time_zone,
        records: entry.records,
        columns,
    })
}

/// The source a file is an export of, inferred from its name: `finance` (finance, 财务, payment,
/// invoice), `sales` (sales, 销售, crm), `order_system` (order, 订单, erp), else the name without
/// folders and extension.
pub fn infer_source(file: &str) -> String {
    let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
    let stem = base.split_once('.').map_or(base, |(stem, _)| stem);
    let lower = stem.to_lowercase();
    let any = |words: &[&str]| words.iter().any(|word| lower.contains(word));
    if any(&["finance", "财务", "payment", "invoice"]) {
        "finance".into()
    } else if any(&["sales", "销售", "crm"]) {
        "sales".into()
    } else if any(&["order", "订单", "erp"]) {
        "order_system".into()
    } else {
        stem.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPPING: &str = r#"
[defaults]
time_zone = "Asia/Shanghai"
currency = "cny"
[defaults.columns]
"Remark" = "ignore"

[[file]]
name = "sales*.csv"
source = "sales"
encoding = "gbk"
delimiter = ";"
date_format = "%d.%m.%Y"
decimal_separator = ","
time_zone = "Europe/Berlin"
[file.columns]
"币种" = "currency"
"Order Ref" = "order_id"

[[file]]
name = "*.json"
records = "orders"
format = "json"
delimiter = "tab"
"#;

    #[test]
    fn a_file_gets_its_entry_over_the_defaults() {
        let mapping = Mapping::from_toml(MAPPING).unwrap();
        let sales = mapping.settings_for("exports/sales_2026-12-01.csv");
        assert_eq!(sales.source.as_deref(), Some("sales"));
        assert_eq!(sales.encoding, Some(encoding_rs::GBK));
        assert_eq!(sales.delimiter, Some(b';'));
        assert_eq!(sales.date_format.as_deref(), Some("%d.%m.%Y"));
        assert_eq!(sales.decimal_separator, Some(','));
        assert_eq!(sales.time_zone, Some(Tz::Europe__Berlin));
        assert_eq!(sales.currency.as_deref(), Some("CNY"));
        assert_eq!(sales.column("币种"), Some(Column::Field(Field::Currency)));
        assert_eq!(
            sales.column("order_ref"),
            Some(Column::Field(Field::OrderId))
        );
        assert_eq!(sales.column("remark"), Some(Column::Ignore));
        assert_eq!(sales.column("amount"), None);

        let finance = mapping.settings_for("finance.json");
        assert_eq!(finance.records.as_deref(), Some("orders"));
        assert_eq!(finance.format, Some(Format::Json));
        assert_eq!(finance.delimiter, Some(b'\t'));
        assert_eq!(finance.time_zone, Some(Tz::Asia__Shanghai));

        let other = mapping.settings_for("orders.csv");
        assert_eq!(other.source, None);
        assert_eq!(other.time_zone, Some(Tz::Asia__Shanghai));
    }

    fn problem(text: &str) -> String {
        Mapping::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn bad_values_say_where_and_why() {
        assert_eq!(
            problem("[[file]]\nname = \"a.csv\"\ntime_zone = \"Asia/Shangai\""),
            "mapping [[file]] 1 (a.csv): unknown time zone `Asia/Shangai` (an IANA name such as Asia/Shanghai or UTC)"
        );
        assert!(problem("[[file]]\nsource = \"sales\"").contains("[[file]] 1: `name`"));
        assert!(problem("[defaults]\nencoding = \"klingon\"")
            .contains("[defaults]: unknown encoding `klingon`"));
        assert!(problem("[defaults]\ndelimiter = \";;\"")
            .contains("delimiter must be one ASCII character"));
        assert!(
            problem("[defaults]\ndecimal_separator = \"'\"").contains("decimal_separator must be")
        );
        assert!(problem("[defaults]\ndate_format = \"%Q\"")
            .contains("`%Q` is not a strftime date format"));
        assert!(problem("[defaults]\ncurrency = \"dollar\"").contains("three-letter ISO code"));
        assert!(problem("[defaults]\nsource = \"x\"")
            .contains("`source` belongs in a `[[file]]` entry"));
        assert!(problem("[[file]]\nname = \"[a\"").contains("is not a file name pattern"));
        assert!(problem("[defaults.columns]\n\"x\" = \"price\"")
            .contains("column `x` maps to `price`, which is not a field"));
    }

    #[test]
    fn unknown_keys_and_bad_toml_are_refused_with_their_position() {
        let message = problem("[defaults]\ntimezone = \"UTC\"");
        assert!(
            message.contains("unknown field `timezone`") && message.contains("line 2"),
            "{message}"
        );
        let message = problem("[[file]]\nname = ");
        assert!(
            message.starts_with("mapping: ") && message.contains("line 2"),
            "{message}"
        );
        let message = problem("[[file]]\nname = \"a\"\nformat = \"xml\"");
        assert!(message.contains("unknown variant `xml`"), "{message}");
    }

    #[test]
    fn sources_are_inferred_from_file_names() {
        for (file, source) in [
            ("data/finance_2026.json", "finance"),
            ("财务导出.csv", "finance"),
            ("payments.jsonl", "finance"),
            ("sales_orders.csv", "sales"),
            ("销售订单.csv", "sales"),
            ("crm.csv", "sales"),
            ("order_system.csv", "order_system"),
            ("ERP-export.csv", "order_system"),
            ("订单.csv", "order_system"),
            ("misc/other.data.csv", "other"),
        ] {
            assert_eq!(infer_source(file), source, "{file}");
        }
    }
}
