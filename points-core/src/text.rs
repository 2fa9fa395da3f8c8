//! Checks for the short texts commands carry: names, card codes, reasons.

use crate::rejection::Rejection;

/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The longest free-text reason, in characters.
pub const MAX_REASON_CHARS: usize = 1_000;
/// The longest card code, in characters.
pub const MAX_CARD_CODE_CHARS: usize = 64;

fn check(text: &str, max_chars: usize) -> Result<(), Rejection> {
    // Count characters only up to the limit, so a hostile megabyte string costs little.
    let too_long = text.chars().nth(max_chars).is_some();
    // Control characters (including newlines, NUL and bidirectional overrides) make
    // published records ambiguous or unreadable, so they are refused outright.
    let bad_char = text.chars().any(|c| {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
            // Issue 9 (hostile input): line and paragraph separators break a published line
            // like a newline; the Arabic letter mark is a bidi control; U+2060..U+2064 are
            // invisible like the zero-width characters above.
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{061c}' | '\u{2060}'..='\u{2064}')
    });
    if text.trim().is_empty() || too_long || bad_char {
        Err(Rejection::InvalidText)
    } else {
        Ok(())
    }
}

/// A display name: 1 to [`MAX_NAME_CHARS`] characters, not blank, no control characters.
pub fn check_name(text: &str) -> Result<(), Rejection> {
    check(text, MAX_NAME_CHARS)
}

/// A reason for a reversal or rejection: 1 to [`MAX_REASON_CHARS`] characters.
pub fn check_reason(text: &str) -> Result<(), Rejection> {
    check(text, MAX_REASON_CHARS)
}

/// A member card code: 1 to [`MAX_CARD_CODE_CHARS`] printable ASCII characters.
pub fn check_card_code(text: &str) -> Result<(), Rejection> {
    check(text, MAX_CARD_CODE_CHARS)?;
    if text.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Rejection::InvalidText)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("东湖社区").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("   ").is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name("evil\u{202e}txt").is_err());
        assert!(check_name(&"x".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(check_name(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(check_card_code("A-1234").is_ok());
        assert!(check_card_code("卡1").is_err());
    }

    #[test]
    fn invisible_and_line_breaking_unicode_is_refused() {
        for bad in [
            "a\u{2028}b",
            "a\u{2029}b",
            "a\u{061c}b",
            "a\u{2060}b",
            "a\u{2064}b",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("Résidence Élysée 🌸").is_ok());
    }
}
