//! Parsing a word of a command line or config into one of a fixed set of choices (the option
//! enums' `FromStr`), with one error message that lists the accepted words.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The value paired with `s` in `choices` (`(word, value)` pairs; ASCII case ignored), or an
/// error naming `what` and the accepted words: "unknown `what` `s` (expected a, b or c)".
///
/// ```
/// # use mvdit_core::choice::parse_choice;
/// let on = parse_choice("On", &[("auto", 0), ("on", 1), ("off", 2)], "subgroup choice");
/// assert_eq!(on, Ok(1));
/// let err = parse_choice("maybe", &[("auto", 0), ("on", 1), ("off", 2)], "subgroup choice");
/// assert_eq!(err.unwrap_err(), "unknown subgroup choice `maybe` (expected auto, on or off)");
/// ```
pub fn parse_choice<T: Copy>(s: &str, choices: &[(&str, T)], what: &str) -> Result<T, String> {
    match choices.iter().find(|(word, _)| word.eq_ignore_ascii_case(s)) {
        Some(&(_, value)) => Ok(value),
        None => Err(format!("unknown {what} `{s}` (expected {})", one_of(choices.iter().map(|(word, _)| *word)))),
    }
}

/// `a`, `a or b`, `a, b or c`, ...
fn one_of<'a>(words: impl Iterator<Item = &'a str>) -> String {
    let words: Vec<&str> = words.collect();
    match words.split_last() {
        None => String::new(),
        Some((last, [])) => String::from(*last),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_case_and_lists_the_words_on_error() {
        let choices = [("64", 1), ("128", 2), ("auto", 3)];
        assert_eq!(parse_choice("128", &choices, "tile size"), Ok(2));
        assert_eq!(parse_choice("AUTO", &choices, "tile size"), Ok(3));
        assert_eq!(parse_choice("96", &choices, "tile size").unwrap_err(), "unknown tile size `96` (expected 64, 128 or auto)");
        assert_eq!(parse_choice("x", &[("f32", 0), ("f16", 1)], "precision").unwrap_err(), "unknown precision `x` (expected f32 or f16)");
        assert_eq!(parse_choice("x", &[("on", ())], "switch").unwrap_err(), "unknown switch `x` (expected on)");
        assert_eq!(parse_choice::<u8>("", &[], "thing").unwrap_err(), "unknown thing `` (expected )");
    }
}
