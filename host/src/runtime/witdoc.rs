//! Reads what a component says about itself beyond its types: the WIT source the guest SDK
//! embeds (custom section `easyrpc-wit`), scanned for doc comments, `@` annotations and the
//! written parameter types (which reveal `json` and the names of records and variants).
//!
//! Owns the binary walk to the custom section and a small, forgiving WIT scanner. It does not
//! build descriptors (`describe` merges this with the component's real types) and never fails
//! a load: a module without the section, or with text the scanner cannot follow, is described
//! from its types alone.

use std::collections::HashMap;

/// Custom section written by `easyrpc_guest::embed_wit!`.
pub const WIT_SECTION: &str = "easyrpc-wit";

/// Everything the embedded WIT says about one exported function.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FunctionDocs {
    /// Doc comment lines that are not annotations, joined with newlines.
    pub doc: Option<String>,
    /// `@name rest` annotation lines, in order: (`default`, `b = 2`), (`varargs`, `parts`)...
    pub annotations: Vec<(String, String)>,
    /// Parameter name -> the type as written (`json`, `list<point>`).
    pub param_types: HashMap<String, TypeText>,
    pub result_type: Option<TypeText>,
}

/// A type as written in WIT source: `list<json>` is `list` with one argument `json`.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeText {
    pub name: String,
    pub args: Vec<TypeText>,
}

/// Docs of all functions, keyed by (interface name or none for the world, function WIT name).
pub type WitDocs = HashMap<(Option<String>, String), FunctionDocs>;

/// Concatenated contents of every `easyrpc-wit` custom section in the component, at any nesting
/// depth (the linker puts it in the embedded core module). None when there is none.
pub fn embedded_wit(component: &[u8]) -> Option<String> {
    let mut found = Vec::new();
    collect_sections(component, &mut found, 0);
    if found.is_empty() {
        return None;
    }
    String::from_utf8(found).ok()
}

/// Deepest nesting of components/modules walked; real components nest two or three levels.
const MAX_NESTING: usize = 8;

fn read_leb(bytes: &[u8], pos: &mut usize) -> Option<usize> {
    let mut result: u64 = 0;
    for shift in (0..35).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        result |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return usize::try_from(result).ok();
        }
    }
    None
}

/// Walks a wasm binary (core module or component) and appends the payloads of our section.
/// Section ids 1 (core module) and 4 (component) of a component hold nested binaries.
fn collect_sections(bytes: &[u8], out: &mut Vec<u8>, depth: usize) {
    if depth > MAX_NESTING || bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return;
    }
    let is_component = bytes[6..8] == [1, 0];
    let mut pos = 8;
    while pos < bytes.len() {
        let id = bytes[pos];
        pos += 1;
        let Some(size) = read_leb(bytes, &mut pos) else { return };
        let Some(body) = bytes.get(pos..pos.saturating_add(size)) else { return };
        pos += size;
        match id {
            0 => {
                let mut p = 0;
                let Some(name_len) = read_leb(body, &mut p) else { continue };
                if body.get(p..p + name_len) == Some(WIT_SECTION.as_bytes()) {
                    out.extend_from_slice(&body[p + name_len..]);
                    out.push(b'\n');
                }
            }
            1 | 4 if is_component => collect_sections(body, out, depth + 1),
            _ => {}
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Doc(String),
    Word(String),
    Punct(char),
    Arrow,
}

fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            let start = i;
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            let line: String = chars[start..i].iter().collect();
            if let Some(doc) = line.strip_prefix("///") {
                tokens.push(Token::Doc(doc.strip_prefix(' ').unwrap_or(doc).trim_end().to_owned()));
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '-' && chars.get(i + 1) == Some(&'>') {
            tokens.push(Token::Arrow);
            i += 2;
        } else if c.is_alphanumeric() || c == '%' || c == '_' || c == '-' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '%' | '_' | '-')) {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        } else {
            tokens.push(Token::Punct(c));
            i += 1;
        }
    }
    tokens
}

/// Scans WIT source for function docs. Understands `interface x { ... }`, `world x { ... }`,
/// `export name: func(...) -> t;` in worlds and `name: func(...) -> t;` in interfaces; skips
/// everything else (types, resources, `use`, `import`).
pub fn scan(text: &str) -> WitDocs {
    let tokens = tokenize(text);
    let mut docs = WitDocs::new();
    // Stack of open blocks: Some(interface name) for an interface, None for a world or a block
    // whose contents are not functions (records, resources...).
    let mut blocks: Vec<BlockKind> = Vec::new();
    let mut pending_docs: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Doc(line) => {
                pending_docs.push(line.clone());
                i += 1;
                continue;
            }
            Token::Punct('}') => {
                blocks.pop();
                pending_docs.clear();
                i += 1;
                continue;
            }
            Token::Punct(';') | Token::Punct(',') => {
                pending_docs.clear();
                i += 1;
                continue;
            }
            _ => {}
        }
        let word = |k: usize| match tokens.get(k) {
            Some(Token::Word(w)) => Some(w.as_str()),
            _ => None,
        };
        let punct = |k: usize, c: char| tokens.get(k) == Some(&Token::Punct(c));
        let container = blocks.last().cloned();
        let in_function_scope = !matches!(container, Some(BlockKind::Other) | None);
        // `export name: func(` in a world, `name: func(` in an interface or resource.
        let func_start = match (&container, word(i)) {
            (Some(BlockKind::World), Some("export")) if punct(i + 2, ':') && word(i + 3) == Some("func") => Some(i + 1),
            (Some(BlockKind::Interface(_) | BlockKind::Resource(..)), Some(_))
                if punct(i + 1, ':') && word(i + 2) == Some("func") =>
            {
                Some(i)
            }
            _ => None,
        };
        if let (Some(name_at), true) = (func_start, in_function_scope) {
            let name = word(name_at).unwrap_or_default().trim_start_matches('%').to_owned();
            let mut k = name_at + 3; // at '('
            let (params, next) = parse_params(&tokens, k);
            k = next;
            let mut result_type = None;
            if tokens.get(k) == Some(&Token::Arrow) {
                let (ty, next) = parse_type(&tokens, k + 1);
                result_type = ty;
                k = next;
            }
            let (interface, name) = match container {
                Some(BlockKind::Interface(n)) => (Some(n), name),
                Some(BlockKind::Resource(iface, res)) => (Some(iface), format!("[method]{res}.{name}")),
                _ => (None, name),
            };
            docs.insert((interface, name), function_docs(std::mem::take(&mut pending_docs), params, result_type));
            i = k;
            continue;
        }
        // Block openers: `interface x {`, `world x {`, anything else `... {`.
        if let Some(kw) = word(i) {
            if (kw == "interface" || kw == "world") && punct(i + 2, '{') {
                let name = word(i + 1).unwrap_or_default().trim_start_matches('%').to_owned();
                blocks.push(if kw == "interface" { BlockKind::Interface(name) } else { BlockKind::World });
                pending_docs.clear();
                i += 3;
                continue;
            }
        }
        if let (Some("resource"), Some(BlockKind::Interface(iface))) = (word(i), &container) {
            if punct(i + 2, '{') {
                let res = word(i + 1).unwrap_or_default().trim_start_matches('%').to_owned();
                blocks.push(BlockKind::Resource(iface.clone(), res));
                pending_docs.clear();
                i += 3;
                continue;
            }
        }
        if punct(i, '{') {
            blocks.push(BlockKind::Other);
            pending_docs.clear();
        }
        i += 1;
    }
    docs
}

#[derive(Clone, Debug, PartialEq)]
enum BlockKind {
    Interface(String),
    /// A resource inside an interface: (interface, resource). Its methods are recorded as
    /// `[method]<resource>.<name>`, the name of their export.
    Resource(String, String),
    World,
    Other,
}

fn function_docs(lines: Vec<String>, params: HashMap<String, TypeText>, result_type: Option<TypeText>) -> FunctionDocs {
    let mut doc_lines = Vec::new();
    let mut annotations = Vec::new();
    for line in lines {
        if let Some(rest) = line.trim_start().strip_prefix('@') {
            let (key, value) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            annotations.push((key.to_owned(), value.trim().to_owned()));
        } else {
            doc_lines.push(line);
        }
    }
    while doc_lines.last().is_some_and(|l| l.trim().is_empty()) {
        doc_lines.pop();
    }
    let doc = (!doc_lines.is_empty()).then(|| doc_lines.join("\n"));
    FunctionDocs { doc, annotations, param_types: params, result_type }
}

/// Parses `( name: type, ... )` starting at the `(`; returns the params and the index after `)`.
fn parse_params(tokens: &[Token], open: usize) -> (HashMap<String, TypeText>, usize) {
    let mut params = HashMap::new();
    if tokens.get(open) != Some(&Token::Punct('(')) {
        return (params, open);
    }
    let mut k = open + 1;
    loop {
        match tokens.get(k) {
            None => return (params, k),
            Some(Token::Punct(')')) => return (params, k + 1),
            Some(Token::Punct(',')) | Some(Token::Doc(_)) => k += 1,
            Some(Token::Word(name)) if tokens.get(k + 1) == Some(&Token::Punct(':')) => {
                let (ty, next) = parse_type(tokens, k + 2);
                if let Some(ty) = ty {
                    params.insert(name.trim_start_matches('%').to_owned(), ty);
                }
                k = next.max(k + 2);
            }
            Some(_) => k += 1,
        }
    }
}

/// Parses a type like `list<tuple<a, b>>`; returns it and the index after it.
fn parse_type(tokens: &[Token], at: usize) -> (Option<TypeText>, usize) {
    let name = match tokens.get(at) {
        Some(Token::Word(w)) => w.trim_start_matches('%').to_owned(),
        Some(Token::Punct('_')) => "_".to_owned(),
        _ => return (None, at),
    };
    let mut k = at + 1;
    let mut args = Vec::new();
    if tokens.get(k) == Some(&Token::Punct('<')) {
        k += 1;
        loop {
            match tokens.get(k) {
                None => break,
                Some(Token::Punct('>')) => {
                    k += 1;
                    break;
                }
                Some(Token::Punct(',')) => k += 1,
                _ => {
                    let (arg, next) = parse_type(tokens, k);
                    match arg {
                        Some(a) => args.push(a),
                        None => {
                            k += 1;
                            continue;
                        }
                    }
                    k = next;
                }
            }
        }
    }
    (Some(TypeText { name, args }), k)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIT: &str = r#"
package demo:x;
interface shapes {
    /// A shape.
    variant shape { circle(f64), dot }
    /// The area.
    /// Second line.
    area: func(s: shape) -> f64;
    // not a doc
    resource thing { get: func() -> u32; }
    unlisted: func();
}
world w {
    use easyrpc:guest/types@0.1.0.{json};
    record point { x: f64, y: f64 }
    /// Add.
    /// @default b = 2
    export add: func(a: s64, b: s64) -> s64;
    /// Untyped.
    export echo: func(x: json, ys: list<tuple<json, point>>) -> result<json, string>;
    export shapes;
}
"#;

    #[test]
    fn scans_docs_annotations_and_written_types() {
        let docs = scan(WIT);
        let area = &docs[&(Some("shapes".to_owned()), "area".to_owned())];
        assert_eq!(area.doc.as_deref(), Some("The area.\nSecond line."));
        assert_eq!(area.param_types["s"].name, "shape");
        let add = &docs[&(None, "add".to_owned())];
        assert_eq!(add.doc.as_deref(), Some("Add."));
        assert_eq!(add.annotations, vec![("default".to_owned(), "b = 2".to_owned())]);
        let echo = &docs[&(None, "echo".to_owned())];
        assert_eq!(echo.param_types["x"].name, "json");
        let ys = &echo.param_types["ys"];
        assert_eq!((ys.name.as_str(), ys.args[0].name.as_str()), ("list", "tuple"));
        assert_eq!(ys.args[0].args[1].name, "point");
        assert_eq!(echo.result_type.as_ref().unwrap().args[0].name, "json");
        let unlisted = &docs[&(Some("shapes".to_owned()), "unlisted".to_owned())];
        assert_eq!(unlisted.doc, None);
        assert!(!docs.contains_key(&(Some("shapes".to_owned()), "get".to_owned())));
        let method = &docs[&(Some("shapes".to_owned()), "[method]thing.get".to_owned())];
        assert_eq!(method.result_type.as_ref().unwrap().name, "u32");
    }

    #[test]
    fn finds_the_section_in_nested_binaries() {
        // A core module with our custom section, wrapped in a component's core-module section.
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        let payload = b"world w {}";
        let mut custom = vec![WIT_SECTION.len() as u8];
        custom.extend_from_slice(WIT_SECTION.as_bytes());
        custom.extend_from_slice(payload);
        module.push(0);
        module.push(custom.len() as u8);
        module.extend_from_slice(&custom);
        let mut component = b"\0asm\x0d\0\x01\0".to_vec();
        component.push(1);
        component.push(module.len() as u8);
        component.extend_from_slice(&module);
        assert_eq!(embedded_wit(&component).as_deref(), Some("world w {}\n"));
        assert_eq!(embedded_wit(b"garbage"), None);
    }
}
