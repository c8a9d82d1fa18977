//! Bytes to text: a byte order mark wins, then the mapping's encoding, then UTF-8, then
//! GB18030 (which reads GBK and GB2312 too). Decoding never replaces bad bytes silently.

use crate::error::FileError;
use encoding_rs::{Encoding, GB18030, UTF_8};
use std::borrow::Cow;

/// A file's text and what it was decoded from.
#[derive(Debug)]
pub(crate) struct Decoded<'a> {
    /// The text, without byte order mark.
    pub text: Cow<'a, str>,
    /// The encoding's name (`UTF-8`, `gb18030`, `GBK`, …).
    pub encoding: &'static str,
    /// Whether the file started with a byte order mark.
    pub bom: bool,
}

/// Decodes a file's bytes.
pub(crate) fn decode<'a>(
    bytes: &'a [u8],
    named: Option<&'static Encoding>,
) -> Result<Decoded<'a>, FileError> {
    if let Some((encoding, bom_length)) = Encoding::for_bom(bytes) {
        let text = strict(encoding, &bytes[bom_length..])?;
        return Ok(Decoded {
            text,
            encoding: encoding.name(),
            bom: true,
        });
    }
    if let Some(encoding) = named {
        return Ok(Decoded {
            text: strict(encoding, bytes)?,
            encoding: encoding.name(),
            bom: false,
        });
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(Decoded {
            text: Cow::Borrowed(text),
            encoding: UTF_8.name(),
            bom: false,
        }),
        Err(error) => match GB18030.decode_without_bom_handling_and_without_replacement(bytes) {
            Some(text) => Ok(Decoded {
                text,
                encoding: GB18030.name(),
                bom: false,
            }),
            None => Err(FileError::UnknownEncoding {
                line: line_at(&bytes[..error.valid_up_to()]),
            }),
        },
    }
}

/// The text in `encoding`, or an error naming the first line with a bad sequence.
fn strict<'a>(encoding: &'static Encoding, bytes: &'a [u8]) -> Result<Cow<'a, str>, FileError> {
    if let Some(text) = encoding.decode_without_bom_handling_and_without_replacement(bytes) {
        return Ok(text);
    }
    let (replaced, _) = encoding.decode_without_bom_handling(bytes);
    let line = replaced
        .find('\u{FFFD}')
        .map_or(1, |at| line_at(&replaced.as_bytes()[..at]));
    Err(FileError::Malformed {
        encoding: encoding.name(),
        line,
    })
}

/// The line (from 1) that follows `before`.
fn line_at(before: &[u8]) -> usize {
    before.iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_with_and_without_bom() {
        let plain = decode("订单号,金额\n".as_bytes(), None).unwrap();
        assert_eq!(
            (plain.text.as_ref(), plain.encoding, plain.bom),
            ("订单号,金额\n", "UTF-8", false)
        );
        let with_bom = decode(b"\xEF\xBB\xBForder_id\n", None).unwrap();
        assert_eq!(
            (with_bom.text.as_ref(), with_bom.encoding, with_bom.bom),
            ("order_id\n", "UTF-8", true)
        );
    }

    #[test]
    fn gbk_is_detected() {
        let (bytes, _, _) = encoding_rs::GBK.encode("订单号,客户名称\nSO-1,上海星辰贸易有限公司\n");
        let decoded = decode(&bytes, None).unwrap();
        assert_eq!(decoded.text, "订单号,客户名称\nSO-1,上海星辰贸易有限公司\n");
        assert_eq!(decoded.encoding, "gb18030");
    }

    #[test]
    fn a_named_encoding_is_used_and_checked() {
        let (bytes, _, _) = encoding_rs::GBK.encode("客户\n");
        assert_eq!(
            decode(&bytes, Some(encoding_rs::GBK)).unwrap().text,
            "客户\n"
        );
        let latin = decode(b"caf\xE9\n", Some(encoding_rs::WINDOWS_1252)).unwrap();
        assert_eq!(
            (latin.text.as_ref(), latin.encoding),
            ("café\n", "windows-1252")
        );
        let err = decode(b"a\nb\n\xFF\xFF\n", Some(encoding_rs::UTF_8)).unwrap_err();
        assert_eq!(err.to_string(), "line 3: not valid UTF-8");
    }

    #[test]
    fn the_byte_order_mark_wins() {
        let bytes = [0xFF, 0xFE, b'x', 0, b'y', 0];
        let decoded = decode(&bytes, Some(encoding_rs::GBK)).unwrap();
        assert_eq!(
            (decoded.text.as_ref(), decoded.encoding),
            ("xy", "UTF-16LE")
        );
    }

    #[test]
    fn bytes_in_neither_encoding_are_refused_with_their_line() {
        let err = decode(b"order_id\nA\n\x80\xFF\n", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 3: not UTF-8, and not GBK/GB18030 either; name the encoding in the mapping"
        );
    }
}
