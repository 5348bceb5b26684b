//! The canonical YAML writer: turns a JSON value (the normalized stack, or any other document)
//! into block-style YAML the way `docker compose config` prints it. Two-space indentation,
//! mappings in insertion order, sequences indented under their key, `{}`/`[]` for empty
//! collections, and strings quoted only when a plain scalar would read back as something else.
//! Multi-line strings become `|`/`|-` literal blocks when that reads back exactly.

use serde_json::{Map, Value};

use super::node::{PlainKind, parse_bool, plain_kind};

/// Renders `v` as a YAML document ending with a newline.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    if is_block(v) {
        write_block(&mut out, v, 0, false);
    } else {
        // A scalar document: never a literal block (no key to hang it on).
        out.push_str(&inline(v, None));
        out.push('\n');
    }
    out
}

/// Whether `v` is written as an indented block (a non-empty mapping or sequence).
fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// Writes a non-empty mapping or sequence whose entries start at column `col`. With
/// `first_inline`, the first entry continues the current line (after `- `).
fn write_block(out: &mut String, v: &Value, col: usize, first_inline: bool) {
    match v {
        Value::Object(m) => write_map(out, m, col, first_inline),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 || !first_inline {
                    indent(out, col);
                }
                out.push_str("- ");
                if is_block(item) {
                    write_block(out, item, col + 2, true);
                } else {
                    out.push_str(&inline(item, Some(col + 2)));
                    out.push('\n');
                }
            }
        }
        _ => {
            out.push_str(&inline(v, None));
            out.push('\n');
        }
    }
}

fn write_map(out: &mut String, m: &Map<String, Value>, col: usize, first_inline: bool) {
    for (i, (k, val)) in m.iter().enumerate() {
        if i > 0 || !first_inline {
            indent(out, col);
        }
        out.push_str(&key(k));
        out.push(':');
        if is_block(val) {
            out.push('\n');
            write_block(out, val, col + 2, false);
        } else {
            out.push(' ');
            out.push_str(&inline(val, Some(col + 2)));
            out.push('\n');
        }
    }
}

/// A mapping key: a plain or double-quoted string (never a literal block).
fn key(k: &str) -> String {
    if needs_quotes(k) {
        double_quoted(k)
    } else {
        k.to_string()
    }
}

/// A scalar or empty collection on the current line. `block_col` is where the lines of a
/// literal block would go; `None` forbids literal blocks.
fn inline(v: &Value, block_col: Option<usize>) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s, block_col),
        Value::Array(_) => "[]".to_string(),
        Value::Object(_) => "{}".to_string(),
    }
}

fn string(s: &str, block_col: Option<usize>) -> String {
    if !needs_quotes(s) {
        return s.to_string();
    }
    if let Some(col) = block_col
        && literal_ok(s)
    {
        return literal(s, col);
    }
    double_quoted(s)
}

/// Characters that must be escaped in a double-quoted scalar (and so rule out plain and
/// literal styles): C0 and C1 controls except tab and newline, DEL, the byte-order mark, the
/// Unicode line and paragraph separators and the non-characters U+FFFE/U+FFFF.
fn is_special(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}')
}

/// Whether a string cannot be written as a plain scalar.
fn needs_quotes(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return true;
    };
    if s.contains(|c: char| is_special(c) || c == '\n' || c == '\t' || c == '\r') {
        return true;
    }
    // Would read back as null, a boolean or a number.
    if matches!(s, "~" | "<<") || s.eq_ignore_ascii_case("null") {
        return true;
    }
    if parse_bool(s).is_some()
        || ["true", "false", "yes", "no", "on", "off", "y", "n"]
            .iter()
            .any(|w| s.eq_ignore_ascii_case(w))
    {
        return true;
    }
    if plain_kind(s) != PlainKind::Str || looks_numeric(s) {
        return true;
    }
    // Leading or trailing whitespace is lost on a plain scalar.
    if first == ' ' || s.ends_with(' ') {
        return true;
    }
    // Indicators that cannot start a plain scalar; `-`, `?` and `:` only when followed by a
    // space or nothing (`-c` is a fine plain scalar).
    if "[]{},#&*!|>'\"%@`".contains(first) {
        return true;
    }
    if matches!(first, '-' | '?' | ':') {
        let second = s[first.len_utf8()..].chars().next();
        if second.is_none_or(|c| c == ' ') {
            return true;
        }
    }
    // Document markers.
    if s.starts_with("---") || s.starts_with("...") {
        return true;
    }
    // A mapping indicator or a comment inside the text.
    s.contains(": ") || s.ends_with(':') || s.contains(" #")
}

/// A wider net than the core schema for text a YAML reader might take as a number: YAML 1.1
/// forms such as `1_000`, `0b101`, `1:30`, `+.5`, `.inf`, `0X1F`.
fn looks_numeric(s: &str) -> bool {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    if body.is_empty() {
        return false;
    }
    let lower = body.to_ascii_lowercase();
    if lower == ".inf" || lower == ".nan" {
        return true;
    }
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(digits) = lower.strip_prefix(prefix) {
            return !digits.is_empty() && digits.chars().all(|c| c == '_' || c.is_digit(radix));
        }
    }
    // Sexagesimal (YAML 1.1): `1:30`, `190:20:30.15`.
    if body.contains(':') {
        return body.starts_with(|c: char| c.is_ascii_digit())
            && body
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, ':' | '_' | '.'));
    }
    // Decimal: digits (with `_`), an optional fraction, an optional exponent.
    let b = lower.as_bytes();
    let mut i = 0;
    let mut digits = 0;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        digits += usize::from(b[i].is_ascii_digit());
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            digits += usize::from(b[i].is_ascii_digit());
            i += 1;
        }
    }
    if digits == 0 {
        return false;
    }
    if i < b.len() && b[i] == b'e' {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == b.len()
}

/// Whether a multi-line string reads back exactly from a literal block: it has a line break,
/// no characters needing escapes, no line with trailing spaces or tabs, a first line that is
/// not empty and does not start with a space, and at most one trailing newline.
fn literal_ok(s: &str) -> bool {
    if !s.contains('\n') || s.contains(|c: char| is_special(c) || c == '\r') {
        return false;
    }
    let body = s.strip_suffix('\n').unwrap_or(s);
    if body.is_empty() || body.ends_with('\n') {
        return false;
    }
    if body.starts_with([' ', '\t', '\n']) {
        return false;
    }
    body.split('\n').all(|l| !l.ends_with([' ', '\t']))
}

/// A literal block scalar whose lines start at column `col`.
fn literal(s: &str, col: usize) -> String {
    let (body, header) = match s.strip_suffix('\n') {
        Some(b) => (b, "|"),
        None => (s, "|-"),
    };
    let mut out = String::from(header);
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            indent(&mut out, col);
            out.push_str(line);
        }
    }
    out
}

/// A double-quoted scalar with YAML escapes.
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\u{1b}' => out.push_str("\\e"),
            c if is_special(c) => {
                let n = u32::from(c);
                if n < 0x100 {
                    out.push_str(&format!("\\x{n:02X}"));
                } else {
                    out.push_str(&format!("\\u{n:04X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::node::{Node, Value as NodeValue};
    use crate::spec::yaml::parse;
    use serde_json::json;

    /// Reads YAML back into JSON the way a core-schema reader would: quoted scalars are
    /// strings, plain ones are typed by their text.
    fn to_json(n: &Node) -> Value {
        match &n.value {
            NodeValue::Null => Value::Null,
            NodeValue::Scalar(s) if s.quoted => Value::String(s.text.clone()),
            NodeValue::Scalar(s) => match plain_kind(&s.text) {
                PlainKind::Bool(b) => Value::Bool(b),
                PlainKind::Int(i) => json!(i),
                PlainKind::Float(f) => json!(f),
                PlainKind::Str => Value::String(s.text.clone()),
            },
            NodeValue::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
            NodeValue::Map(m) => {
                let mut out = Map::new();
                for (k, v) in m.iter() {
                    out.insert(k.name.clone(), to_json(v));
                }
                Value::Object(out)
            }
        }
    }

    fn read_back(text: &str) -> Value {
        let docs = parse(text, "t.yaml").unwrap_or_else(|e| panic!("{text}\n{}", e.message));
        assert_eq!(docs.len(), 1, "{text}");
        to_json(&docs[0])
    }

    fn round_trip(v: &Value) {
        let text = to_yaml(v);
        assert!(text.ends_with('\n'));
        assert_eq!(&read_back(&text), v, "through:\n{text}");
    }

    #[test]
    fn compose_like_layout() {
        let v = json!({
            "name": "demo",
            "services": {
                "web": {
                    "command": ["nginx", "-g", "daemon off;"],
                    "environment": {"A": "1", "DEBUG": "true", "EMPTY": ""},
                    "image": "nginx:1.25",
                    "networks": {"default": null},
                    "ports": [
                        {"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"}
                    ],
                    "healthcheck": {"interval": "1m30s", "disable": false},
                    "labels": {},
                    "volumes": []
                }
            },
            "networks": {"default": {"name": "demo_default"}}
        });
        let expected = "\
name: demo
services:
  web:
    command:
      - nginx
      - -g
      - daemon off;
    environment:
      A: \"1\"
      DEBUG: \"true\"
      EMPTY: \"\"
    image: nginx:1.25
    networks:
      default: null
    ports:
      - mode: ingress
        target: 80
        published: \"8080\"
        protocol: tcp
    healthcheck:
      interval: 1m30s
      disable: false
    labels: {}
    volumes: []
networks:
  default:
    name: demo_default
";
        assert_eq!(to_yaml(&v), expected);
        round_trip(&v);
    }

    #[test]
    fn nested_sequences_and_roots() {
        let v = json!([[1, 2], [], {}, [{"a": 1, "b": [true, null]}], {"x": {"w": "z"}}]);
        let expected = "\
- - 1
  - 2
- []
- {}
- - a: 1
    b:
      - true
      - null
- x:
    w: z
";
        assert_eq!(to_yaml(&v), expected);
        round_trip(&v);
        assert_eq!(to_yaml(&json!({})), "{}\n");
        assert_eq!(to_yaml(&json!([])), "[]\n");
        assert_eq!(to_yaml(&json!(null)), "null\n");
        assert_eq!(to_yaml(&json!("a\nb")), "\"a\\nb\"\n");
        assert_eq!(to_yaml(&json!(1.5)), "1.5\n");
        assert_eq!(to_yaml(&json!("hello")), "hello\n");
    }

    #[test]
    fn quoting_rules() {
        let q = |s: &str| string(s, None);
        for s in [
            "true",
            "True",
            "yes",
            "no",
            "on",
            "off",
            "Off",
            "y",
            "N",
            "null",
            "NULL",
            "~",
            "",
            "8080",
            "1.5",
            "0440",
            "1e3",
            "-1",
            "+1",
            "0x1F",
            "0o17",
            "0b101",
            "1_000",
            ".5",
            ".inf",
            "-.inf",
            ".nan",
            "1:30",
            "<<",
            " a",
            "a ",
            "-",
            "- a",
            "?",
            ": x",
            "a: b",
            "a #b",
            "a:",
            "#x",
            "&a",
            "*a",
            "!x",
            "|x",
            ">x",
            "'x",
            "\"x",
            "%x",
            "@x",
            "`x",
            "[x",
            "]x",
            "{x",
            "}x",
            ",x",
            "---",
            "...",
            "a\tb",
            "a\nb",
            "\u{1b}[0m",
        ] {
            assert!(
                q(s).starts_with('"'),
                "{s:?} should be quoted, got {}",
                q(s)
            );
        }
        for s in [
            "nginx",
            "nginx:1.25",
            "a b",
            "-c",
            "-g",
            "?x",
            ":x",
            "a#b",
            "a:b",
            "1.2.3",
            "http://x:80/y",
            "daemon off;",
            "CMD-SHELL",
            "echo $HOME",
            "10s",
            "512m",
            "é",
            "a,b",
            "x[1]",
            "1-2",
            "0.0.0.0",
            "::1",
            "2001:db8::1",
            "a'b",
            "a\"b",
            "yes-no",
        ] {
            assert_eq!(q(s), s, "{s:?} should stay plain");
        }
        assert_eq!(q("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(
            q("\u{0}\u{7}\u{1b}\u{7f}\u{85}\u{2028}"),
            "\"\\0\\a\\e\\x7F\\x85\\u2028\""
        );
    }

    #[test]
    fn keys_are_quoted_too() {
        let v = json!({"true": 1, "8080": "x", "a: b": null, "-": [], "": {}, "ok": "y"});
        let text = to_yaml(&v);
        assert_eq!(
            text,
            "\"true\": 1\n\"8080\": x\n\"a: b\": null\n\"-\": []\n\"\": {}\nok: \"y\"\n"
        );
        round_trip(&v);
    }

    #[test]
    fn multi_line_strings() {
        let v = json!({"script": "echo a\necho b\n", "s": ["x\n  y", "last"]});
        let text = to_yaml(&v);
        assert_eq!(
            text,
            "script: |\n  echo a\n  echo b\ns:\n  - |-\n    x\n      y\n  - last\n"
        );
        round_trip(&v);
        // Forms a literal block cannot carry exactly fall back to double quotes.
        for s in [
            "a \nb", "a\n\n", "\nx", " x\ny", "\n", "a\r\nb", "x\n\n\n", "a\nb\t",
        ] {
            let t = to_yaml(&json!({ "k": s }));
            assert!(t.starts_with("k: \""), "{s:?} gave {t}");
            round_trip(&json!({ "k": s }));
        }
        round_trip(&json!({"k": "a\n\nb\n", "l": ["p\n\n\nq", "# not a comment\n- nor a seq\n"]}));
    }

    #[test]
    fn tricky_strings_round_trip() {
        let strings = [
            "true",
            "yes",
            "no",
            "on",
            "off",
            "null",
            "~",
            "",
            "8080",
            "1.5",
            "0440",
            "1e3",
            " lead",
            "trail ",
            "a: b",
            "a #b",
            "#x",
            "- x",
            "-x",
            "?x",
            "? x",
            ":x",
            "[a, b]",
            "{a: b}",
            "*alias",
            "&anchor",
            "!tag",
            "|",
            ">",
            "'s'",
            "\"d\"",
            "%TAG",
            "@x",
            "`x",
            "a\tb",
            "tab\t",
            "\u{1}\u{8}\u{b}\u{c}\u{1f}",
            "caf\u{e9} \u{1f600}",
            "\u{feff}bom",
            "back\\slash",
            "---",
            "... end",
            "x:",
            "<<",
            "0x1F",
            "1_000",
            ".inf",
            "1:30",
            "line1\nline2",
            "line1\nline2\n",
            "\ttabbed\nx",
            "x\n\ty\n  z",
            "a\u{85}b",
            "a\u{2028}b",
            "x # y: z",
            "k=v",
            "$VAR",
            "${X:-y}",
        ];
        for s in strings {
            round_trip(&json!({ s: s, "seq": [s, { s: [s] }] }));
        }
    }

    #[test]
    fn numbers_and_bools_are_bare() {
        let v = json!({"i": 42, "neg": -7, "f": 0.25, "big": 1e300, "t": true, "f2": false});
        assert_eq!(
            to_yaml(&v),
            "i: 42\nneg: -7\nf: 0.25\nbig: 1e+300\nt: true\nf2: false\n"
        );
        round_trip(&v);
    }

    fn any_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            "(?s).{0,8}|[a-z :#\\-\\n]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::vec(("[a-z0-9 :\\-]{0,5}", inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn any_string_round_trips(s in "\\PC*|(?s).{0,16}|[ \\t\\n\\r:#\\-?'\"a0-9._+|>{}\\[\\],&*!%@`~]{0,12}") {
            let v = json!({ "k": s.clone(), s.clone(): [s.clone()] });
            let text = to_yaml(&v);
            let docs = parse(&text, "t.yaml").map_err(|e| {
                proptest::test_runner::TestCaseError::fail(format!("{text:?}: {}", e.message))
            })?;
            proptest::prop_assert_eq!(to_json(&docs[0]), v, "through {:?}", text);
        }

        #[test]
        fn any_document_round_trips(v in any_value()) {
            let text = to_yaml(&v);
            let docs = parse(&text, "t.yaml").map_err(|e| {
                proptest::test_runner::TestCaseError::fail(format!("{text:?}: {}", e.message))
            })?;
            proptest::prop_assert_eq!(to_json(&docs[0]), v, "through {:?}", text);
        }
    }
}
