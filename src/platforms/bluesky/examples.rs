//! Post records as the Bluesky documentation writes them out (facets, a quote, images, a link
//! card), fed to the record parser the poller and Jetstream use:
//! `tests/fixtures/platforms/atproto/examples/post-records.json` (source in
//! `tests/fixtures/platforms/SOURCE.md`).

use serde_json::Value;

use super::api::post;

const DID: &str = "did:plc:u5cwb2mwiv2bfq53cjufe6yn";

fn record(name: &str) -> Value {
    let all: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/platforms/atproto/examples/post-records.json"
    ))
    .unwrap();
    all[name].clone()
}

#[test]
fn a_documented_link_facet_is_written_as_its_target() {
    let p = post(DID, "3k4duaz5vfs2b", &record("facets"), false, None);
    assert_eq!(p.id, "3k4duaz5vfs2b");
    assert_eq!(
        p.url.as_deref(),
        Some("https://bsky.app/profile/did:plc:u5cwb2mwiv2bfq53cjufe6yn/post/3k4duaz5vfs2b")
    );
    assert_eq!(
        p.created_at.to_rfc3339(),
        "2023-08-08T01:03:41.157302+00:00"
    );
    assert_eq!(p.content.links, vec!["https://en.wikipedia.org/wiki/CBOR"]);
    assert!(
        p.content.text.ends_with(
            "share the URL 👨\u{200d}❤\u{fe0f}\u{200d}👨 https://en.wikipedia.org/wiki/CBOR."
        ),
        "{:?}",
        p.content.text
    );
}

#[test]
fn documented_embeds_give_their_links_and_media() {
    let quote = post(DID, "q", &record("quote"), false, None);
    assert_eq!(
        quote.content.links,
        vec!["at://did:plc:u5cwb2mwiv2bfq53cjufe6yn/app.bsky.feed.post/3k44deefqdk2g"]
    );
    let images = post(DID, "i", &record("images"), false, None);
    assert_eq!(
        images.content.media,
        vec![
            "image:bafkreibabalobzn6cd366ukcsjycp4yymjymgfxcv6xczmlgpemzkz3cfa",
            "image:bafkreif3fouono2i3fmm5moqypwskh3yjtp7snd5hfq5pr453oggygyrte",
        ]
    );
    let card = post(DID, "e", &record("external"), false, None);
    assert_eq!(card.content.links, vec!["https://bsky.app"]);
    assert_eq!(
        card.content.text,
        "post which embeds an external URL as a card"
    );
}
