//! A small line diff (longest common subsequence) for showing expected and
//! actual JSON side by side, unified style: ` ` same, `-` expected only,
//! `+` actual only; long runs of unchanged lines are elided.

use serde_json::Value as Json;

/// Unchanged lines shown around each change.
const CONTEXT: usize = 3;

/// Pretty JSON with object keys sorted at every level, so a diff shows only
/// real differences.
pub fn canonical(value: &Json) -> String {
    fn sort(value: &Json) -> Json {
        match value {
            Json::Object(map) => {
                let mut entries: Vec<(&String, &Json)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Json::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sort(v)))
                        .collect(),
                )
            }
            Json::Array(items) => Json::Array(items.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string_pretty(&sort(value)).unwrap_or_else(|_| value.to_string())
}

/// The diff of `expected` against `actual`, one line per entry, prefixed
/// `-`/`+`/` `, each line indented by `indent`.
pub fn unified(expected: &str, actual: &str, indent: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| *op != ' ')
        .map(|(n, _)| n)
        .collect();
    let near_change = |n: usize| changed.iter().any(|&c| c.abs_diff(n) <= CONTEXT);
    let mut out = String::new();
    let mut elided = false;
    for (n, (op, line)) in ops.iter().enumerate() {
        if *op == ' ' && !near_change(n) {
            if !elided {
                out.push_str(&format!("{indent}  ...\n"));
                elided = true;
            }
            continue;
        }
        elided = false;
        out.push_str(&format!("{indent}{op} {line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_changed_field_shows_as_minus_and_plus_lines() {
        let expected = canonical(&json!({"b": 1, "a": {"team": "growth", "x": 1}}));
        let actual = canonical(&json!({"a": {"x": 1, "team": "payments"}, "b": 1}));
        let diff = unified(&expected, &actual, "");
        assert!(diff.contains("-     \"team\": \"growth\","), "{diff}");
        assert!(diff.contains("+     \"team\": \"payments\","), "{diff}");
        assert_eq!(
            diff.lines().filter(|l| l.starts_with(['-', '+'])).count(),
            2
        );
    }

    #[test]
    fn equal_texts_have_no_change_lines() {
        let text = canonical(&json!({"a": [1, 2, 3]}));
        assert!(!unified(&text, &text, "").contains(['-', '+']));
    }
}
