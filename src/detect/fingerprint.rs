//! The content fingerprint that approvals are matched by.
//!
//! SHA-256 of the normalized text (Unicode NFC, whitespace collapsed, links written as their
//! targets) plus the sorted link targets and media digests. Links and media are hashed as sets of
//! their own so that a rogue post reusing approved wording with a swapped link or image is a
//! different post.

use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

use crate::model::PostContent;

pub fn fingerprint(content: &PostContent) -> String {
    let mut links: Vec<String> = content.links.iter().map(|l| normalize_link(l)).collect();
    links.sort();
    links.dedup();
    let mut media = content.media.clone();
    media.sort();
    media.dedup();
    let mut h = Sha256::new();
    h.update(b"tocsin-fp-v1\ntext:");
    h.update(normalize_text(&content.text).as_bytes());
    h.update(b"\nlinks:");
    h.update(links.join("\n").as_bytes());
    h.update(b"\nmedia:");
    h.update(media.join("\n").as_bytes());
    hex::encode(h.finalize())
}

/// NFC, then every run of whitespace as one space, trimmed.
pub fn normalize_text(text: &str) -> String {
    let nfc: String = text.nfc().collect();
    nfc.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Lower-cases scheme and host the way `url` does, so `HTTPS://Example.com` and
/// `https://example.com/` count as one target.
fn normalize_link(link: &str) -> String {
    url::Url::parse(link).map_or_else(|_| link.trim().to_owned(), |u| u.to_string())
}

/// Content of a post known only by its text (an approval typed by a person): the links are the
/// http(s) words of the text, with sentence punctuation after them left out as platforms do.
pub fn content_from_text(text: &str) -> PostContent {
    let links = text
        .split_whitespace()
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .map(|w| {
            w.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '"', '\''])
                .to_owned()
        })
        .collect();
    PostContent {
        text: text.to_owned(),
        links,
        media: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_and_unicode_forms_do_not_matter() {
        let a = content_from_text("Café  launch\n https://example.com/q4.");
        // "e" + combining acute accent: the NFD form of é.
        let b = content_from_text("Cafe\u{301} launch https://example.com/q4.");
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_eq!(a.links, vec!["https://example.com/q4".to_string()]);
    }

    #[test]
    fn swapped_link_or_media_is_another_post() {
        let a = content_from_text("Claim here https://example.com/claim");
        let mut b = a.clone();
        b.links = vec!["https://evil.example/claim".into()];
        assert_ne!(fingerprint(&a), fingerprint(&b));
        let mut c = a.clone();
        c.media = vec!["image:blurhash".into()];
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }

    #[test]
    fn link_case_of_host_is_normalized() {
        let mut a = content_from_text("x");
        a.links = vec!["HTTPS://Example.COM".into()];
        let mut b = content_from_text("x");
        b.links = vec!["https://example.com/".into()];
        assert_eq!(fingerprint(&a), fingerprint(&b));
    }
}
