//! Telegram's HTML parse mode: the text and entities (UTF-16 offsets) a message is stored as,
//! and the errors Telegram gives for markup it refuses.

use super::*;

// ---------------------------------------------------------------------------------
// Text and entities
// ---------------------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Rendered {
    pub(super) text: String,
    pub(super) entities: Vec<Value>,
}

pub(super) fn render(
    text: &str,
    parse_mode: Option<&str>,
    params: &Params,
) -> Result<Rendered, ApiError> {
    let rendered = match parse_mode.map(str::to_ascii_lowercase).as_deref() {
        Some("html") => parse_html(text).map_err(|e| {
            ApiError::bad_request(format!("Bad Request: can't parse entities: {e}"))
        })?,
        Some("markdownv2" | "markdown") | None => {
            // Markdown is passed through unparsed: the fake does not model its escaping rules.
            let entities = match params.json("entities") {
                Ok(Some(Value::Array(entities))) if parse_mode.is_none() => entities,
                _ => Vec::new(),
            };
            Rendered {
                text: text.to_owned(),
                entities,
            }
        }
        Some(_) => return Err(ApiError::bad_request("Bad Request: unsupported parse_mode")),
    };
    if rendered.text.trim().is_empty() {
        return Err(ApiError::bad_request("Bad Request: message text is empty"));
    }
    if utf16_len(&rendered.text) > MAX_TEXT_UTF16 {
        return Err(ApiError::bad_request("Bad Request: message is too long"));
    }
    Ok(rendered)
}

pub(super) struct OpenTag {
    pub(super) name: String,
    pub(super) start: usize,
    pub(super) entity: Option<Value>,
    pub(super) code_language: Option<String>,
}

/// Parses Telegram's HTML dialect: the supported tags become entities with UTF-16
/// offsets, anything else is rejected the way the Bot API rejects it.
pub(super) fn parse_html(input: &str) -> Result<Rendered, String> {
    let mut text = String::new();
    let mut offset16 = 0usize;
    let mut stack: Vec<OpenTag> = Vec::new();
    let mut entities: Vec<Value> = Vec::new();
    let mut i = 0usize;
    let push = |text: &mut String, offset16: &mut usize, c: char| {
        text.push(c);
        *offset16 += c.len_utf16();
    };
    while i < input.len() {
        let rest = &input[i..];
        let Some(c) = rest.chars().next() else { break };
        if c == '&' {
            if let Some((decoded, used)) = decode_entity(rest) {
                push(&mut text, &mut offset16, decoded);
                i += used;
            } else {
                push(&mut text, &mut offset16, '&');
                i += 1;
            }
            continue;
        }
        if c != '<' {
            push(&mut text, &mut offset16, c);
            i += c.len_utf8();
            continue;
        }
        let tag_start = i;
        let Some(close) = rest.find('>') else {
            return Err(format!("Unclosed start tag at byte offset {tag_start}"));
        };
        let inside = &rest[1..close];
        i += close + 1;
        if let Some(end_name) = inside.strip_prefix('/') {
            let end_name = end_name.trim().to_ascii_lowercase();
            let Some(open) = stack.pop() else {
                return Err(format!("Unexpected end tag at byte offset {tag_start}"));
            };
            if !end_name.is_empty() && end_name != open.name {
                return Err(format!(
                    "Unmatched end tag at byte offset {tag_start}, expected \"</{}>\", found \"</{end_name}>\"",
                    open.name
                ));
            }
            let length = offset16 - open.start;
            if open.name == "code"
                && let Some(language) = &open.code_language
                && let Some(parent) = stack.last_mut()
                && parent.name == "pre"
                && let Some(entity) = parent.entity.as_mut()
            {
                entity["language"] = json!(language);
                continue;
            }
            if let Some(mut entity) = open.entity
                && length > 0
            {
                entity["offset"] = json!(open.start);
                entity["length"] = json!(length);
                entities.push(entity);
            }
            continue;
        }
        let name_len = inside
            .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '-'))
            .unwrap_or(inside.len());
        let name = inside[..name_len].to_ascii_lowercase();
        let attrs = parse_attributes(&inside[name_len..]);
        let attr = |key: &str| attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let mut code_language = None;
        let entity = match name.as_str() {
            "b" | "strong" => Some(json!({"type": "bold"})),
            "i" | "em" => Some(json!({"type": "italic"})),
            "u" | "ins" => Some(json!({"type": "underline"})),
            "s" | "strike" | "del" => Some(json!({"type": "strikethrough"})),
            "tg-spoiler" => Some(json!({"type": "spoiler"})),
            "span" => {
                if attr("class").as_deref() != Some("tg-spoiler") {
                    return Err("Tag \"span\" must have class \"tg-spoiler\"".to_owned());
                }
                Some(json!({"type": "spoiler"}))
            }
            "a" => attr("href")
                .and_then(|href| link_url(&href))
                .map(|url| json!({"type": "text_link", "url": url})),
            "code" => {
                code_language = attr("class")
                    .and_then(|class| class.strip_prefix("language-").map(str::to_owned));
                Some(json!({"type": "code"}))
            }
            "pre" => Some(json!({"type": "pre"})),
            "blockquote" => {
                if attrs.iter().any(|(k, _)| k == "expandable") {
                    Some(json!({"type": "expandable_blockquote"}))
                } else {
                    Some(json!({"type": "blockquote"}))
                }
            }
            "tg-emoji" => {
                let Some(id) = attr("emoji-id") else {
                    return Err(
                        "Custom emoji entity must contain a valid custom emoji identifier"
                            .to_owned(),
                    );
                };
                Some(json!({"type": "custom_emoji", "custom_emoji_id": id}))
            }
            _ => {
                return Err(format!(
                    "Unsupported start tag \"{name}\" at byte offset {tag_start}"
                ));
            }
        };
        stack.push(OpenTag {
            name,
            start: offset16,
            entity,
            code_language,
        });
    }
    if let Some(open) = stack.last() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{}\"",
            open.name
        ));
    }
    entities.sort_by_key(|e| {
        (
            e["offset"].as_u64().unwrap_or(0),
            std::cmp::Reverse(e["length"].as_u64().unwrap_or(0)),
        )
    });
    Ok(Rendered { text, entities })
}

pub(super) fn parse_attributes(mut s: &str) -> Vec<(String, String)> {
    let mut attrs = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() || s == "/" {
            return attrs;
        }
        let name_len = s
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(s.len());
        let name = s[..name_len].to_ascii_lowercase();
        s = s[name_len..].trim_start();
        let value = if let Some(after) = s.strip_prefix('=') {
            let after = after.trim_start();
            let (value, rest) = match after.chars().next() {
                Some(quote @ ('"' | '\'')) => {
                    let body = &after[1..];
                    let end = body.find(quote).unwrap_or(body.len());
                    (&body[..end], body.get(end + 1..).unwrap_or(""))
                }
                _ => {
                    let end = after.find(char::is_whitespace).unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            s = rest;
            decode_entities(value)
        } else {
            String::new()
        };
        attrs.push((name, value));
    }
}

pub(super) fn decode_entities(s: &str) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        if let Some((c, used)) = decode_entity(rest) {
            out.push(c);
            i += used;
        } else if let Some(c) = rest.chars().next() {
            out.push(c);
            i += c.len_utf8();
        } else {
            break;
        }
    }
    out
}

/// Telegram understands the four named entities plus numeric ones; any other `&` is
/// taken literally.
pub(super) fn decode_entity(s: &str) -> Option<(char, usize)> {
    let body = s.strip_prefix('&')?;
    let end = body.find(';')?;
    if end > 10 {
        return None;
    }
    let name = &body[..end];
    let c = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)?
        }
    };
    Some((c, end + 2))
}

pub(super) fn link_url(href: &str) -> Option<String> {
    url::Url::parse(href)
        .or_else(|_| url::Url::parse(&format!("http://{href}")))
        .ok()
        .map(String::from)
}

/// `url` entities over every http(s) word, as Telegram's parser marks them.
pub(super) fn url_entities(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut offset = 0;
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            offset += 1;
        }
        if word.starts_with("http://") || word.starts_with("https://") {
            out.push(json!({"type": "url", "offset": offset, "length": utf16_len(word)}));
        }
        offset += utf16_len(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_entities_with_utf16_offsets() {
        let r =
            parse_html("🚨 <b>alice</b> &lt;3 <a href=\"https://x.example/a\">link</a>").unwrap();
        assert_eq!(r.text, "🚨 alice <3 link");
        assert_eq!(
            r.entities[0],
            json!({"type": "bold", "offset": 3, "length": 5})
        );
        assert_eq!(
            r.entities[1],
            json!({"type": "text_link", "url": "https://x.example/a", "offset": 12, "length": 4})
        );
    }

    #[test]
    fn html_errors_match_telegram_categories() {
        assert!(
            parse_html("a <foo>b</foo>")
                .unwrap_err()
                .starts_with("Unsupported start tag")
        );
        assert!(
            parse_html("<b>x</i>")
                .unwrap_err()
                .starts_with("Unmatched end tag")
        );
        assert!(
            parse_html("<b>x")
                .unwrap_err()
                .starts_with("Can't find end tag")
        );
        assert!(parse_html("1 < 2").is_err());
        assert_eq!(parse_html("fish & chips").unwrap().text, "fish & chips");
    }

    #[test]
    fn code_with_language_inside_pre_sets_pre_language() {
        let r = parse_html("<pre><code class=\"language-rust\">fn</code></pre>").unwrap();
        assert_eq!(
            r.entities,
            vec![json!({"type": "pre", "language": "rust", "offset": 0, "length": 2})]
        );
    }
}
