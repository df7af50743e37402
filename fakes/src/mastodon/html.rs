//! Status HTML as Mastodon renders it (links shortened, mentions and hashtags marked up), and
//! the plain text read back out of it.

use super::*;

// ---------------------------------------------------------------------------------
// Status HTML
// ---------------------------------------------------------------------------------

/// Renders plain text the way Mastodon's TextFormatter does, with hashtag links on
/// [`DEFAULT_BASE`]. Use [`FakeMastodon::render`] for links on the fake's own origin.
pub fn status_html(text: &str) -> String {
    status_html_with_base(DEFAULT_BASE, text)
}

/// Renders plain text as Mastodon's TextFormatter does: escaped text, shortened URL
/// anchors, hashtag anchors on `base`, and Rails' `simple_format` paragraphs. Mentions
/// are left as text (Mastodon links only mentions of accounts it knows).
pub fn status_html_with_base(base: &str, text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    if text.trim().is_empty() {
        return String::new();
    }
    let linked = linkify(base.trim_end_matches('/'), &text);
    // simple_format: paragraphs split on blank lines (trailing empty ones dropped, as
    // Ruby's split does), single newlines become <br />, then every newline removed.
    let mut paragraphs: Vec<&str> = Vec::new();
    let mut rest = linked.as_str();
    while let Some(start) = rest.find("\n\n") {
        paragraphs.push(&rest[..start]);
        rest = rest[start..].trim_start_matches('\n');
    }
    paragraphs.push(rest);
    while paragraphs.last().is_some_and(|p| p.is_empty()) {
        paragraphs.pop();
    }
    let mut html = String::new();
    for paragraph in paragraphs {
        let mut formatted = String::new();
        let chars: Vec<char> = paragraph.chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            if c == '\n' {
                let after_text = i > 0 && chars[i - 1] != '\n';
                let before_text = chars.get(i + 1).is_some_and(|&n| n != '\n');
                if after_text && before_text {
                    formatted.push_str("<br />");
                }
            } else {
                formatted.push(c);
            }
        }
        html.push_str("<p>");
        html.push_str(&formatted);
        html.push_str("</p>");
    }
    html
}

pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

pub(super) fn encode_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn linkify(base: &str, text: &str) -> String {
    let mut out = String::new();
    let mut plain_start = 0;
    let mut i = 0;
    let mut prev: Option<char> = None;
    while i < text.len() {
        let rest = &text[i..];
        let Some(c) = rest.chars().next() else { break };
        let boundary = prev.is_none_or(|p| !p.is_alphanumeric());
        if boundary
            && (rest.starts_with("http://") || rest.starts_with("https://"))
            && let Some(len) = url_length(rest)
        {
            out.push_str(&escape(&text[plain_start..i]));
            out.push_str(&shortened_link(&rest[..len]));
            i += len;
            plain_start = i;
            prev = text[..i].chars().next_back();
            continue;
        }
        if c == '#' && prev.is_none_or(|p| !(p.is_alphanumeric() || matches!(p, '=' | '/' | ')'))) {
            let tag_len: usize = rest[1..]
                .chars()
                .take_while(|ch| ch.is_alphanumeric() || *ch == '_')
                .map(char::len_utf8)
                .sum();
            let tag = &rest[1..1 + tag_len];
            if tag.chars().any(char::is_alphabetic) {
                out.push_str(&escape(&text[plain_start..i]));
                out.push_str(&format!(
                    "<a href=\"{}\" class=\"mention hashtag\" rel=\"tag\">#<span>{}</span></a>",
                    escape(&format!("{base}/tags/{}", encode_path(tag))),
                    escape(tag)
                ));
                i += 1 + tag_len;
                plain_start = i;
                prev = tag.chars().next_back();
                continue;
            }
        }
        prev = Some(c);
        i += c.len_utf8();
    }
    out.push_str(&escape(&text[plain_start..]));
    out
}

/// Length of the URL at the start of `s`, without trailing punctuation or an
/// unbalanced closing parenthesis, as twitter-text's extractor leaves them out.
pub(super) fn url_length(s: &str) -> Option<usize> {
    let mut end = s
        .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
        .unwrap_or(s.len());
    loop {
        let candidate = &s[..end];
        let Some(last) = candidate.chars().next_back() else {
            break;
        };
        let unbalanced_paren =
            last == ')' && candidate.matches('(').count() < candidate.matches(')').count();
        if matches!(last, '.' | ',' | ';' | ':' | '!' | '?' | '\'') || unbalanced_paren {
            end -= last.len_utf8();
        } else {
            break;
        }
    }
    let scheme_len = if s.starts_with("https://") { 8 } else { 7 };
    (end > scheme_len).then_some(end)
}

pub(super) fn shortened_link(url: &str) -> String {
    let prefix_len = ["https://www.", "http://www.", "https://", "http://"]
        .iter()
        .find(|p| url.starts_with(**p))
        .map_or(0, |p| p.len());
    let (prefix, rest) = url.split_at(prefix_len);
    let display: String = rest.chars().take(30).collect();
    let suffix: String = rest.chars().skip(30).collect();
    let class = if rest.chars().count() > 30 {
        "ellipsis"
    } else {
        ""
    };
    format!(
        "<a href=\"{}\" target=\"_blank\" rel=\"nofollow noopener noreferrer\" translate=\"no\"><span class=\"invisible\">{}</span><span class=\"{class}\">{}</span><span class=\"invisible\">{}</span></a>",
        escape(url),
        escape(prefix),
        escape(&display),
        escape(&suffix)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn status_html_matches_mastodon_markup() {
        assert_eq!(
            status_html("Hello <world> & \"you\""),
            "<p>Hello &lt;world&gt; &amp; &quot;you&quot;</p>"
        );
        assert_eq!(status_html("a\nb\n\nc"), "<p>a<br />b</p><p>c</p>");
        assert_eq!(
            status_html("see https://example.com/x."),
            "<p>see <a href=\"https://example.com/x\" target=\"_blank\" rel=\"nofollow noopener noreferrer\" translate=\"no\"><span class=\"invisible\">https://</span><span class=\"\">example.com/x</span><span class=\"invisible\"></span></a>.</p>"
        );
        assert_eq!(
            status_html("#Rust!"),
            "<p><a href=\"https://mastodon.example/tags/Rust\" class=\"mention hashtag\" rel=\"tag\">#<span>Rust</span></a>!</p>"
        );
        assert_eq!(
            status_html("issue #123 and a#b"),
            "<p>issue #123 and a#b</p>"
        );
        assert_eq!(status_html(""), "");
    }

    #[test]
    pub(super) fn long_urls_are_ellipsized_after_thirty_characters() {
        let html = status_html("https://www.example.com/a/very/long/path/that/keeps/going");
        assert!(html.contains("<span class=\"invisible\">https://www.</span><span class=\"ellipsis\">example.com/a/very/long/path/t</span><span class=\"invisible\">hat/keeps/going</span>"));
    }

    #[test]
    pub(super) fn source_text_and_tags_come_back_out_of_html() {
        let html = status_html("Hi #Tocsin\nhttps://example.com/a?b=1&c=2");
        assert_eq!(
            html_to_text(&html),
            "Hi #Tocsin\nhttps://example.com/a?b=1&c=2"
        );
        assert_eq!(hashtags(&html), vec!["tocsin".to_owned()]);
    }
}
