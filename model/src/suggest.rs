//! "Did you mean" for serde's unknown-field errors: the closest valid name by edit distance.

/// Levenshtein distance between two short strings.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + (ca != cb) as usize).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Appends "did you mean `x`?" to a serde message of the form
/// "unknown field `foo`, expected one of `a`, `b`" (or "expected `a` or `b`").
pub fn with_suggestion(msg: &str) -> String {
    let Some(rest) = msg.split("unknown field `").nth(1) else { return msg.to_string() };
    let Some((field, tail)) = rest.split_once('`') else { return msg.to_string() };
    let candidates: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
    // A typo of a name, or of its start ("bacth" for "batch_size").
    let score = |c: &str| edit_distance(field, c).min(edit_distance(field, &c.chars().take(field.chars().count()).collect::<String>()));
    match candidates.iter().min_by_key(|c| score(c)) {
        Some(b) if score(b) <= (field.len() / 2).max(2) => format!("{msg} (did you mean `{b}`?)"),
        _ => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn suggests_the_closest_field_only_when_close() {
        let m = "unknown field `hiden_size`, expected one of `in_channels`, `hidden_size`, `depth` at line 1 column 12";
        assert!(with_suggestion(m).ends_with("(did you mean `hidden_size`?)"));
        let m = "unknown field `zzzzzzzz`, expected one of `in_channels`, `depth`";
        assert_eq!(with_suggestion(m), m);
        assert_eq!(with_suggestion("other error"), "other error");
    }
}
