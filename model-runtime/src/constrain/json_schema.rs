//! JSON output constrained to an object schema: typed fields (string, number, integer, boolean,
//! string enum), required keys, no unknown keys. A byte-level state machine decides after every
//! byte whether the output can still become a valid instance.
//!
//! Layout is compact JSON: no whitespace except one optional space after `:` and after `,`.
//!
//! Fields marked `"x-copy": true` take their value from the input text ([`CopySource`]): a string
//! must be a span of it, a number one of the numbers written in it.

use std::sync::Arc;

use serde_json::Value;

use super::copy::{number_complete_ok, number_prefix_ok, CopySource, SpanMatch};
use super::Constraint;

/// Longest string value the machine lets the model write (keeps generation finite).
const DEFAULT_MAX_STRING_BYTES: usize = 200;
/// Most digits before the decimal point (keeps integers within i64 and numbers exact-ish).
pub(super) const MAX_INT_DIGITS: usize = 15;
/// Most digits after the decimal point.
pub(super) const MAX_FRACTION_DIGITS: usize = 15;
/// Most exponent digits (keeps numbers within f64 range).
const MAX_EXPONENT_DIGITS: usize = 2;
/// Most fields an object schema may have.
const MAX_FIELDS: usize = 64;

/// A schema the machine cannot use, with the JSON pointer of the offending part.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("schema {pointer}: {message}")]
pub struct SchemaError {
    /// Where in the schema (JSON pointer, `` for the root).
    pub pointer: String,
    /// What is wrong.
    pub message: String,
}

/// The type of one field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldKind {
    /// A string of at most `max_bytes` bytes.
    String {
        /// Length cap in bytes.
        max_bytes: usize,
    },
    /// Any JSON number.
    Number,
    /// An integer.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// One of the given strings.
    Enum(Vec<String>),
}

/// One field of the object.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaField {
    /// The key.
    pub name: String,
    /// Its type.
    pub kind: FieldKind,
    /// Whether the key must appear.
    pub required: bool,
    /// `"x-copy": true`: the value is copied from the input text (a span of it for strings, a
    /// number written in it for numbers and integers).
    pub copy: bool,
}

/// An object schema: the subset of JSON Schema the constrained decoder supports.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectSchema {
    /// Fields in schema order.
    pub fields: Vec<SchemaField>,
}

fn err(pointer: impl Into<String>, message: impl Into<String>) -> SchemaError {
    SchemaError {
        pointer: pointer.into(),
        message: message.into(),
    }
}

impl ObjectSchema {
    /// Reads `{"type":"object","properties":{...},"required":[...]}` where each property is
    /// `{"type":"string"|"number"|"integer"|"boolean"}` (strings may have `maxLength`) or
    /// `{"enum":[strings]}`; string, number and integer properties may add `"x-copy": true`.
    pub fn from_json_schema(schema: &Value) -> Result<Self, SchemaError> {
        let root = schema
            .as_object()
            .ok_or_else(|| err("", "the schema must be a JSON object"))?;
        match root.get("type") {
            Some(Value::String(t)) if t == "object" => {}
            None => {}
            Some(other) => {
                return Err(err(
                    "/type",
                    format!("only \"object\" is supported at the root, found {other}"),
                ))
            }
        }
        let properties = root
            .get("properties")
            .and_then(Value::as_object)
            .ok_or_else(|| err("/properties", "an object of properties is required"))?;
        if properties.is_empty() {
            return Err(err("/properties", "at least one property is required"));
        }
        if properties.len() > MAX_FIELDS {
            return Err(err(
                "/properties",
                format!("at most {MAX_FIELDS} properties are supported"),
            ));
        }
        let required: Vec<&str> = match root.get("required") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .ok_or_else(|| err(format!("/required/{i}"), "must be a string"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(err("/required", "must be an array of property names")),
        };
        for (i, name) in required.iter().enumerate() {
            if !properties.contains_key(*name) {
                return Err(err(
                    format!("/required/{i}"),
                    format!("`{name}` is not a declared property"),
                ));
            }
        }
        let mut fields = Vec::new();
        for (name, prop) in properties {
            let pointer = format!("/properties/{}", name.replace('~', "~0").replace('/', "~1"));
            if name.is_empty()
                || name
                    .chars()
                    .any(|c| c == '"' || c == '\\' || c.is_control())
            {
                return Err(err(pointer, "property names must be non-empty, without quotes, backslashes or control characters"));
            }
            let kind = Self::field_kind(prop, &pointer)?;
            let copy = match prop.get("x-copy") {
                None => false,
                Some(Value::Bool(copy)) => *copy,
                Some(_) => return Err(err(format!("{pointer}/x-copy"), "must be true or false")),
            };
            if copy
                && !matches!(
                    kind,
                    FieldKind::String { .. } | FieldKind::Number | FieldKind::Integer
                )
            {
                return Err(err(
                    format!("{pointer}/x-copy"),
                    "only string, number and integer values can be copied from the input",
                ));
            }
            fields.push(SchemaField {
                name: name.clone(),
                kind,
                required: required.contains(&name.as_str()),
                copy,
            });
        }
        Ok(Self { fields })
    }

    fn field_kind(prop: &Value, pointer: &str) -> Result<FieldKind, SchemaError> {
        let obj = prop
            .as_object()
            .ok_or_else(|| err(pointer, "a property schema must be an object"))?;
        if let Some(values) = obj.get("enum") {
            let values = values
                .as_array()
                .ok_or_else(|| err(format!("{pointer}/enum"), "must be an array"))?;
            if values.is_empty() {
                return Err(err(
                    format!("{pointer}/enum"),
                    "must list at least one value",
                ));
            }
            let strings = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        err(
                            format!("{pointer}/enum/{i}"),
                            "only string enum values are supported",
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
            return Ok(FieldKind::Enum(strings));
        }
        let kind = obj
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("{pointer}/type"), "a type (or an enum) is required"))?;
        match kind {
            "string" => {
                let max_bytes = match obj.get("maxLength") {
                    None => DEFAULT_MAX_STRING_BYTES,
                    Some(v) => v
                        .as_u64()
                        .filter(|n| *n > 0)
                        .map(|n| n as usize)
                        .ok_or_else(|| {
                            err(format!("{pointer}/maxLength"), "must be a positive integer")
                        })?,
                };
                Ok(FieldKind::String { max_bytes })
            }
            "number" => Ok(FieldKind::Number),
            "integer" => Ok(FieldKind::Integer),
            "boolean" => Ok(FieldKind::Boolean),
            other => Err(err(
                format!("{pointer}/type"),
                format!("type `{other}` is not supported (string, number, integer, boolean, enum)"),
            )),
        }
    }

    /// Checks a value against the schema; the message names the first offending key.
    pub fn validate(&self, value: &Value) -> Result<(), String> {
        let obj = value.as_object().ok_or("the value is not a JSON object")?;
        for key in obj.keys() {
            if !self.fields.iter().any(|f| &f.name == key) {
                return Err(format!("unknown key `{key}`"));
            }
        }
        for field in &self.fields {
            match obj.get(&field.name) {
                None if field.required => {
                    return Err(format!("required key `{}` is missing", field.name))
                }
                None => {}
                Some(v) => {
                    let ok = match &field.kind {
                        FieldKind::String { .. } => v.is_string(),
                        FieldKind::Number => v.is_number(),
                        FieldKind::Integer => v.is_i64() || v.is_u64(),
                        FieldKind::Boolean => v.is_boolean(),
                        FieldKind::Enum(values) => {
                            v.as_str().is_some_and(|s| values.iter().any(|e| e == s))
                        }
                    };
                    if !ok {
                        return Err(format!(
                            "key `{}` has the wrong type or value: {v}",
                            field.name
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn default_value(kind: &FieldKind) -> Vec<u8> {
        match kind {
            FieldKind::String { .. } => b"\"\"".to_vec(),
            FieldKind::Number | FieldKind::Integer => b"0".to_vec(),
            FieldKind::Boolean => b"false".to_vec(),
            FieldKind::Enum(values) => {
                serde_json::to_vec(&values[0]).unwrap_or_else(|_| b"\"\"".to_vec())
            }
        }
    }
}

/// Progress through a number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum NumberStage {
    Empty,
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl NumberStage {
    fn complete(self) -> bool {
        matches!(self, Self::Zero | Self::Int | Self::Frac | Self::ExpDigits)
    }

    fn next(self, b: u8, integer: bool) -> Option<Self> {
        use NumberStage::*;
        let digit = b.is_ascii_digit();
        match (self, b) {
            (Empty, b'-') => Some(Minus),
            (Empty | Minus, b'0') => Some(Zero),
            (Empty | Minus, _) if digit => Some(Int),
            (Int, _) if digit => Some(Int),
            (Zero | Int, b'.') if !integer => Some(Dot),
            (Zero | Int | Frac, b'e' | b'E') if !integer => Some(Exp),
            (Dot | Frac, _) if digit => Some(Frac),
            (Exp, b'+' | b'-') => Some(ExpSign),
            (Exp | ExpSign | ExpDigits, _) if digit => Some(ExpDigits),
            _ => None,
        }
    }

    /// Bytes that complete an unfinished number.
    fn completion(self) -> &'static [u8] {
        match self {
            Self::Empty | Self::Minus | Self::Dot | Self::Exp | Self::ExpSign => b"0",
            _ => b"",
        }
    }
}

/// Progress inside a string value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum StringStage {
    /// Before the opening quote.
    Open,
    /// Inside; `utf8_pending` continuation bytes still due.
    Body { utf8_pending: u8 },
    /// After a backslash.
    Escape,
    /// Inside `\uXXXX`, this many hex digits still due.
    Unicode(u8),
}

#[derive(Debug, Clone, PartialEq)]
enum ValueStage {
    /// `span` tracks a copied value (`x-copy`) in the source.
    String {
        stage: StringStage,
        bytes: usize,
        max_bytes: usize,
        span: Option<SpanMatch>,
    },
    /// `digits` counts the digits of the current part (integer, fraction or exponent); `copied`
    /// holds the text of a copied number (`x-copy`) when the source has numbers.
    Number {
        stage: NumberStage,
        digits: usize,
        integer: bool,
        copied: Option<Vec<u8>>,
    },
    /// A literal out of a set of candidates (booleans, enum strings in JSON form).
    Literal { written: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Start,
    /// After `{`: a key or `}`.
    ObjectOpen,
    /// Inside a key string (after its opening quote).
    Key {
        written: Vec<u8>,
    },
    /// After a key's closing quote: `:`.
    Colon,
    /// After `:`; `spaced` once the optional space is used.
    BeforeValue {
        spaced: bool,
    },
    Value(ValueStage),
    /// After a value: `,` or `}`.
    AfterValue,
    /// After `,`: optional space, then a key.
    AfterComma {
        spaced: bool,
    },
    Done,
}

/// The incremental validator for one [`ObjectSchema`].
#[derive(Debug, Clone)]
pub struct JsonSchemaMachine {
    schema: std::sync::Arc<ObjectSchema>,
    state: State,
    /// Bit `i` set once field `i` is written.
    written: u64,
    /// Field whose value is being written.
    current: usize,
    /// The input text `x-copy` fields copy from (empty when none was given).
    source: Arc<CopySource>,
}

impl JsonSchemaMachine {
    /// A machine at the start of the output.
    pub fn new(schema: ObjectSchema) -> Self {
        Self {
            schema: std::sync::Arc::new(schema),
            state: State::Start,
            written: 0,
            current: 0,
            source: Arc::new(CopySource::new("")),
        }
    }

    /// Sets the input text that `x-copy` fields copy from (without it, copied strings can only
    /// be empty and copied numbers are unconstrained).
    pub fn with_source(mut self, source: &str) -> Self {
        self.source = Arc::new(CopySource::new(source));
        self
    }

    /// The schema.
    pub fn schema(&self) -> &ObjectSchema {
        &self.schema
    }

    fn remaining(&self) -> impl Iterator<Item = (usize, &SchemaField)> {
        self.schema
            .fields
            .iter()
            .enumerate()
            .filter(|(i, _)| self.written & (1 << i) == 0)
    }

    fn required_done(&self) -> bool {
        self.remaining().all(|(_, f)| !f.required)
    }

    fn literals(&self) -> Vec<Vec<u8>> {
        match &self.schema.fields[self.current].kind {
            FieldKind::Boolean => vec![b"true".to_vec(), b"false".to_vec()],
            FieldKind::Enum(values) => values
                .iter()
                .filter_map(|v| serde_json::to_vec(v).ok())
                .collect(),
            _ => Vec::new(),
        }
    }

    fn start_value(&self) -> ValueStage {
        let field = &self.schema.fields[self.current];
        let copied_number = (field.copy && !self.source.numbers().is_empty()).then(Vec::new);
        match &field.kind {
            FieldKind::String { max_bytes } => ValueStage::String {
                stage: StringStage::Open,
                bytes: 0,
                max_bytes: *max_bytes,
                span: field.copy.then(SpanMatch::new),
            },
            FieldKind::Number => ValueStage::Number {
                stage: NumberStage::Empty,
                digits: 0,
                integer: false,
                copied: copied_number,
            },
            FieldKind::Integer => ValueStage::Number {
                stage: NumberStage::Empty,
                digits: 0,
                integer: true,
                copied: copied_number,
            },
            FieldKind::Boolean | FieldKind::Enum(_) => ValueStage::Literal {
                written: Vec::new(),
            },
        }
    }

    /// Feeds one byte; false when it cannot be part of a valid output (the machine is then
    /// unusable).
    fn step(&mut self, b: u8) -> bool {
        match &mut self.state {
            State::Start => {
                if b != b'{' {
                    return false;
                }
                self.state = State::ObjectOpen;
                true
            }
            State::ObjectOpen | State::AfterComma { spaced: true } => match b {
                b'"' => {
                    self.state = State::Key {
                        written: Vec::new(),
                    };
                    true
                }
                b'}' if matches!(self.state, State::ObjectOpen) && self.required_done() => {
                    self.state = State::Done;
                    true
                }
                _ => false,
            },
            State::AfterComma { spaced: false } => match b {
                b' ' => {
                    self.state = State::AfterComma { spaced: true };
                    true
                }
                b'"' => {
                    self.state = State::Key {
                        written: Vec::new(),
                    };
                    true
                }
                _ => false,
            },
            State::Key { written } => {
                if b == b'"' {
                    let key = std::mem::take(written);
                    let found = self.schema.fields.iter().enumerate().find(|(i, f)| {
                        self.written & (1 << i) == 0 && f.name.as_bytes() == key.as_slice()
                    });
                    return match found {
                        Some((i, _)) => {
                            self.current = i;
                            self.state = State::Colon;
                            true
                        }
                        None => false,
                    };
                }
                written.push(b);
                let written = written.clone();
                self.remaining()
                    .any(|(_, f)| f.name.as_bytes().starts_with(&written))
            }
            State::Colon => {
                if b != b':' {
                    return false;
                }
                self.state = State::BeforeValue { spaced: false };
                true
            }
            State::BeforeValue { spaced } => {
                if b == b' ' && !*spaced {
                    *spaced = true;
                    return true;
                }
                self.state = State::Value(self.start_value());
                self.step(b)
            }
            State::Value(value) => match value {
                ValueStage::String {
                    stage,
                    bytes,
                    max_bytes,
                    span,
                } => match *stage {
                    StringStage::Open => {
                        if b != b'"' {
                            return false;
                        }
                        *stage = StringStage::Body { utf8_pending: 0 };
                        true
                    }
                    StringStage::Body { utf8_pending } => {
                        // A copied value takes each unescaped byte from the source.
                        let copies = |span: &mut Option<SpanMatch>, b: u8| {
                            span.as_mut().is_none_or(|s| s.push(&self.source, b))
                        };
                        if utf8_pending > 0 {
                            if b & 0xC0 != 0x80 || !copies(span, b) {
                                return false;
                            }
                            *stage = StringStage::Body {
                                utf8_pending: utf8_pending - 1,
                            };
                            *bytes += 1;
                            return true;
                        }
                        match b {
                            b'"' => {
                                // A full value may always end; a shorter one not inside a word.
                                if *bytes < *max_bytes
                                    && span.as_ref().is_some_and(|s| !s.may_end(&self.source))
                                {
                                    return false;
                                }
                                self.value_done();
                                true
                            }
                            _ if *bytes >= *max_bytes => false,
                            b'\\' if span.as_ref().is_some_and(|s| !s.may_escape(&self.source)) => {
                                false
                            }
                            b'\\' => {
                                *stage = StringStage::Escape;
                                *bytes += 1;
                                true
                            }
                            0x00..=0x1F | 0x7F => false,
                            0x20..=0x7E => {
                                if !copies(span, b) {
                                    return false;
                                }
                                *bytes += 1;
                                true
                            }
                            0xC2..=0xF4 => {
                                let pending = if b >= 0xF0 {
                                    3
                                } else if b >= 0xE0 {
                                    2
                                } else {
                                    1
                                };
                                // Leave room for the whole character under the cap.
                                if *bytes + 1 + pending as usize > *max_bytes || !copies(span, b) {
                                    return false;
                                }
                                *stage = StringStage::Body {
                                    utf8_pending: pending,
                                };
                                *bytes += 1;
                                true
                            }
                            _ => false,
                        }
                    }
                    StringStage::Escape => {
                        *bytes += 1;
                        match b {
                            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                                let unescaped = match b {
                                    b'b' => 0x08,
                                    b'f' => 0x0C,
                                    b'n' => b'\n',
                                    b'r' => b'\r',
                                    b't' => b'\t',
                                    other => other,
                                };
                                if let Some(span) = span {
                                    if !span.push(&self.source, unescaped) {
                                        return false;
                                    }
                                }
                                *stage = StringStage::Body { utf8_pending: 0 };
                                true
                            }
                            // A copied value writes characters as they are, not as `\uXXXX`.
                            b'u' if span.is_some() => false,
                            b'u' => {
                                *stage = StringStage::Unicode(4);
                                true
                            }
                            _ => false,
                        }
                    }
                    StringStage::Unicode(n) => {
                        if !b.is_ascii_hexdigit() {
                            return false;
                        }
                        *bytes += 1;
                        *stage = if n == 1 {
                            StringStage::Body { utf8_pending: 0 }
                        } else {
                            StringStage::Unicode(n - 1)
                        };
                        true
                    }
                },
                ValueStage::Number {
                    stage,
                    digits,
                    integer,
                    copied,
                } => {
                    if (b == b',' || b == b'}') && stage.complete() {
                        if let Some(copied) = copied {
                            if !number_complete_ok(self.source.numbers(), copied) {
                                return false;
                            }
                        }
                        self.state = State::AfterValue;
                        self.mark_written();
                        return self.step(b);
                    }
                    let Some(next) = stage.next(b, *integer) else {
                        return false;
                    };
                    if let Some(copied) = copied {
                        copied.push(b);
                        if !number_prefix_ok(self.source.numbers(), copied) {
                            return false;
                        }
                    }
                    if next != *stage {
                        *digits = 0;
                    }
                    if b.is_ascii_digit() {
                        *digits += 1;
                        let cap = match next {
                            NumberStage::Frac => MAX_FRACTION_DIGITS,
                            NumberStage::ExpDigits => MAX_EXPONENT_DIGITS,
                            _ => MAX_INT_DIGITS,
                        };
                        if *digits > cap {
                            return false;
                        }
                    }
                    *stage = next;
                    true
                }
                ValueStage::Literal { written } => {
                    written.push(b);
                    let written = written.clone();
                    let literals = self.literals();
                    if literals.contains(&written) {
                        self.value_done();
                        return true;
                    }
                    literals.iter().any(|l| l.starts_with(&written))
                }
            },
            State::AfterValue => match b {
                b',' if self.remaining().next().is_some() => {
                    self.state = State::AfterComma { spaced: false };
                    true
                }
                b'}' if self.required_done() => {
                    self.state = State::Done;
                    true
                }
                _ => false,
            },
            State::Done => false,
        }
    }

    fn mark_written(&mut self) {
        self.written |= 1 << self.current;
    }

    fn value_done(&mut self) {
        self.mark_written();
        self.state = State::AfterValue;
    }

    /// Appends the bytes that close the object, writing defaults for missing required keys.
    fn close_object(&self, out: &mut Vec<u8>, mut first: bool) {
        for (_, field) in self.remaining() {
            if field.required {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend(serde_json::to_vec(&field.name).unwrap_or_default());
                out.push(b':');
                out.extend(ObjectSchema::default_value(&field.kind));
            }
        }
        out.push(b'}');
    }

    /// The remaining required fields other than `current` (used after a key is chosen).
    fn close_after_current(&self, out: &mut Vec<u8>) {
        let mut rest = self.clone();
        rest.mark_written();
        rest.close_object(out, false);
    }
}

impl Constraint for JsonSchemaMachine {
    fn accepts(&self, bytes: &[u8]) -> bool {
        let mut probe = self.clone();
        bytes.iter().all(|&b| probe.step(b))
    }

    fn advance(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if !self.step(b) {
                tracing::warn!(byte = b, "constrained output advanced with a rejected byte");
                return;
            }
        }
    }

    fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    fn may_end(&self) -> bool {
        self.is_complete()
    }

    fn completion(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match &self.state {
            State::Start => {
                out.push(b'{');
                self.close_object(&mut out, true);
            }
            State::ObjectOpen => self.close_object(&mut out, true),
            State::AfterComma { .. } | State::Key { .. } => {
                // Finish a key that is under way with the first field it can name, else close.
                let written: &[u8] = match &self.state {
                    State::Key { written } => written,
                    _ => b"",
                };
                let target = self
                    .remaining()
                    .find(|(_, f)| f.name.as_bytes().starts_with(written))
                    .map(|(i, _)| i);
                match target {
                    Some(i) => {
                        if !matches!(self.state, State::Key { .. }) {
                            out.push(b'"');
                        }
                        let field = &self.schema.fields[i];
                        let name = serde_json::to_vec(&field.name).unwrap_or_default();
                        // Drop the opening quote and the part already written.
                        out.extend(&name[1 + written.len()..]);
                        out.push(b':');
                        out.extend(ObjectSchema::default_value(&field.kind));
                        let mut rest = self.clone();
                        rest.current = i;
                        rest.close_after_current(&mut out);
                    }
                    None => out.push(b'}'),
                }
            }
            State::Colon => {
                out.push(b':');
                out.extend(ObjectSchema::default_value(
                    &self.schema.fields[self.current].kind,
                ));
                self.close_after_current(&mut out);
            }
            State::BeforeValue { .. } => {
                out.extend(ObjectSchema::default_value(
                    &self.schema.fields[self.current].kind,
                ));
                self.close_after_current(&mut out);
            }
            State::Value(value) => {
                match value {
                    ValueStage::String { stage, .. } => match stage {
                        StringStage::Open => out.extend(b"\"\""),
                        StringStage::Body { .. } => out.push(b'"'),
                        StringStage::Escape => out.extend(b"\\\""),
                        StringStage::Unicode(n) => {
                            out.extend(std::iter::repeat_n(b'0', *n as usize));
                            out.push(b'"');
                        }
                    },
                    ValueStage::Number { stage, .. } => out.extend(stage.completion()),
                    ValueStage::Literal { written } => {
                        let literals = self.literals();
                        if let Some(l) = literals.iter().find(|l| l.starts_with(written)) {
                            out.extend(&l[written.len()..]);
                        }
                    }
                }
                self.close_after_current(&mut out);
            }
            State::AfterValue => self.close_object(&mut out, false),
            State::Done => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> ObjectSchema {
        ObjectSchema::from_json_schema(&json!({
            "type": "object",
            "properties": {
                "order_id": {"type": "string"},
                "total": {"type": "number"},
                "items": {"type": "integer"},
                "urgent": {"type": "boolean"},
                "currency": {"enum": ["CNY", "EUR", "USD"]}
            },
            "required": ["order_id", "total", "currency"]
        }))
        .unwrap()
    }

    fn feed(text: &str) -> Option<JsonSchemaMachine> {
        feed_into(JsonSchemaMachine::new(schema()), text)
    }

    /// Feeds `text` byte by byte; `None` at the first byte the machine refuses.
    fn feed_into(mut m: JsonSchemaMachine, text: &str) -> Option<JsonSchemaMachine> {
        for b in text.bytes() {
            if !m.accepts(&[b]) {
                return None;
            }
            m.advance(&[b]);
        }
        Some(m)
    }

    #[test]
    fn a_valid_object_is_accepted_and_complete() {
        let text =
            r#"{"order_id": "SO-1", "total":1234.5,"currency": "CNY", "urgent":false,"items":-3}"#;
        let m = feed(text).expect("accepted");
        assert!(m.is_complete());
        schema()
            .validate(&serde_json::from_str(text).unwrap())
            .unwrap();
    }

    #[test]
    fn invalid_continuations_are_rejected() {
        for bad in [
            r#"["#,
            r#"{"nope"#,
            r#"{"order_id":1"#,
            r#"{"total":01"#,
            r#"{"items":1.5"#,
            r#"{"currency":"GBP"#,
            r#"{"urgent":tru "#,
            r#"{"order_id":"a","order_id""#,
            r#"{"order_id":"a"}"#,
            r#"{"items":1234567890123456"#,
            r#"{"total":1e123"#,
            "{\"order_id\":\"a\nb",
            r#"{  "#,
        ] {
            assert!(feed(bad).is_none(), "accepted {bad}");
        }
    }

    #[test]
    fn multibyte_text_is_accepted_in_strings() {
        assert!(feed(r#"{"order_id":"订单-7 \u00e9\n""#).is_some());
    }

    #[test]
    fn completion_always_yields_a_valid_instance() {
        let full = r#"{"order_id": "S\u00e9-1", "urgent":true,"total":-12.5e+3, "currency": "EUR","items":7}"#;
        for cut in 0..=full.len() {
            let prefix = &full[..cut];
            let m = feed(prefix).unwrap_or_else(|| panic!("prefix rejected: {prefix}"));
            let mut text = prefix.as_bytes().to_vec();
            text.extend(m.completion());
            let text = String::from_utf8(text).unwrap();
            let value: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            schema()
                .validate(&value)
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(
                feed(&text).is_some_and(|m| m.is_complete()),
                "completion not accepted: {text}"
            );
        }
    }

    fn copy_schema() -> ObjectSchema {
        ObjectSchema::from_json_schema(&json!({
            "properties": {
                "order_id": {"type": "string", "x-copy": true},
                "total": {"type": "number", "x-copy": true}
            },
            "required": ["order_id", "total"]
        }))
        .unwrap()
    }

    fn feed_copy(source: &str, text: &str) -> Option<JsonSchemaMachine> {
        feed_into(
            JsonSchemaMachine::new(copy_schema()).with_source(source),
            text,
        )
    }

    #[test]
    fn copied_strings_are_spans_of_the_source() {
        let source = "Order \"SO-1\" from 上海星辰, total 12,450.00 EUR";
        assert!(feed_copy(source, r#"{"order_id":"SO-1"#).is_some());
        assert!(feed_copy(source, r#"{"order_id":"\"SO-1\" from 上海""#).is_some());
        assert!(feed_copy(source, r#"{"order_id":"SO-2"#).is_none());
        assert!(
            feed_copy(source, r#"{"order_id":" SO"#).is_none(),
            "leading space"
        );
        assert!(
            feed_copy(source, r#"{"order_id":"\u0053"#).is_none(),
            "escaped character"
        );
        assert!(feed_copy(source, r#"{"order_id":"上海星"#).is_some());
        assert!(feed_copy(source, r#"{"order_id":"上海辰"#).is_none());
    }

    #[test]
    fn copied_numbers_are_numbers_of_the_source() {
        let source = "SO-1: 200 units, total 12,450.00 EUR";
        let m = feed_copy(source, r#"{"order_id":"SO-1","total":12450}"#).unwrap();
        assert!(m.is_complete());
        assert!(feed_copy(source, r#"{"order_id":"SO-1","total":200}"#).is_some());
        assert!(
            feed_copy(source, r#"{"total":12,"#).is_none(),
            "ends inside 12450"
        );
        assert!(feed_copy(source, r#"{"total":12,450"#).is_none());
        assert!(feed_copy(source, r#"{"total":13"#).is_none());
        assert!(feed_copy(source, r#"{"total":-2"#).is_none());
        // Without numbers in the source the number is free.
        assert!(feed_copy("no digits", r#"{"total":-2.5,"#).is_some());
    }

    #[test]
    fn x_copy_is_checked() {
        let e = ObjectSchema::from_json_schema(
            &json!({"properties": {"a": {"type": "boolean", "x-copy": true}}}),
        )
        .unwrap_err();
        assert_eq!(e.pointer, "/properties/a/x-copy");
        let e = ObjectSchema::from_json_schema(
            &json!({"properties": {"a": {"type": "string", "x-copy": "yes"}}}),
        )
        .unwrap_err();
        assert_eq!(e.pointer, "/properties/a/x-copy");
    }

    #[test]
    fn schema_errors_point_at_the_offending_part() {
        let e = ObjectSchema::from_json_schema(&json!({"properties": {"a": {"type": "date"}}}))
            .unwrap_err();
        assert_eq!(e.pointer, "/properties/a/type");
        let e = ObjectSchema::from_json_schema(
            &json!({"properties": {"a": {"type": "string"}}, "required": ["b"]}),
        )
        .unwrap_err();
        assert_eq!(e.pointer, "/required/0");
    }
}
