//! The Mastodon documentation's own example entities, fed to the parsers the poller uses:
//! `tests/fixtures/platforms/mastodon/examples/` (sources in `tests/fixtures/platforms/SOURCE.md`).

use super::api::{ApiAccount, ApiStatus, post, profile};

#[test]
fn the_documented_account_reads_as_a_profile() {
    let text = include_str!("../../../tests/fixtures/platforms/mastodon/examples/account.json");
    let account: ApiAccount = serde_json::from_str(text).expect("the documented Account parses");
    assert_eq!(account.id, "23634");
    let p = profile(&account).fields;
    assert_eq!(p["handle"], "noiob@awoo.space");
    assert_eq!(p["display_name"], "ikea shark fan account");
    assert_eq!(p["url"], "https://awoo.space/@noiob");
    assert_eq!(p["locked"], "false");
    assert_eq!(p["bot"], "false");
    assert_eq!(p["moved"], "");
    assert_eq!(p["field:Pronouns"], "they/them");
    // The documentation's `</span}` typos leave every anchor open; the next anchor closes it,
    // as in a browser, so no mention, hashtag or link before the last one is dropped.
    assert_eq!(p["field:Website"], "http://shork.xyz");
    assert_eq!(
        p["field:Bots"],
        "@darksouls, @nierautomata, @fedi, code for @awoobot"
    );
    assert!(
        p["note"].starts_with(":ms_rainbow_flag: :ms_bisexual_flagweb: :ms_nonbinary_flag: #awoo"),
        "{p:?}"
    );
    assert!(p["note"].ends_with("#games\n\n@dzuk"), "{p:?}");
}

#[test]
fn the_documented_status_reads_as_a_post() {
    let text = include_str!("../../../tests/fixtures/platforms/mastodon/examples/status.json");
    let status: ApiStatus = serde_json::from_str(text).expect("the documented Status parses");
    let p = post(&status, false);
    assert_eq!(p.id, "103270115826048975");
    assert_eq!(
        p.url.as_deref(),
        Some("https://mastodon.social/@Gargron/103270115826048975")
    );
    assert_eq!(p.created_at.to_rfc3339(), "2019-12-08T03:48:33.901+00:00");
    assert_eq!(p.client.as_deref(), Some("Web"));
    assert!(
        p.content
            .text
            .starts_with("\"I lost my inheritance with one wrong digit on my sort code\""),
        "{:?}",
        p.content.text
    );
    assert!(
        p.content.links.iter().any(|l| l.starts_with(
            "https://www.theguardian.com/money/2019/dec/07/i-lost-my-193000-inheritance"
        )),
        "{:?}",
        p.content.links
    );
    assert!(p.content.media.is_empty());
}
