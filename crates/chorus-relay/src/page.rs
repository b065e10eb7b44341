//! Pages: every list of records or envelopes the relay answers with, over HTTP or
//! pushed on a WebSocket, is bounded by count ([`MAX_PAGE`]) and by bytes
//! ([`MAX_PAGE_BYTES`], [`MAX_BATCH_READ_BYTES`]).
//!
//! The store reads a little past the page ([`crate::store::RelayStore::read_records`]);
//! [`cut`] keeps what fits and says whether more follow, so a client that reads
//! until `more` is false gets everything, in order, a bounded page at a time. A
//! page always makes progress: its first item goes out even if it alone is larger
//! than the byte bound (no item is, with today's bounds, but the paging must not
//! depend on that).
//!
//! [`MAX_PAGE`]: crate::limits::MAX_PAGE

use crate::AppState;
use crate::api::{EnvelopesPage, Id32, RecordsPage};
use crate::error::StoreResult;
use crate::limits::{MAX_BATCH_READ_BYTES, MAX_ENVELOPE_BYTES, MAX_PAGE_BYTES, MAX_RECORD_BYTES};

// One largest item always fits a fresh page, so a page is never cut to nothing.
const _: () = assert!(MAX_RECORD_BYTES <= MAX_PAGE_BYTES);
const _: () = assert!(MAX_ENVELOPE_BYTES <= MAX_BATCH_READ_BYTES);

/// Keeps the longest prefix of `items` of at most `limit` items and `max_bytes`
/// bytes (each item weighing `size`); with `at_least_one`, the first item is kept
/// even if it alone is larger. Returns the page, whether items were left out, and
/// the bytes kept.
pub(crate) fn cut<T>(
    mut items: Vec<T>,
    size: impl Fn(&T) -> usize,
    limit: usize,
    max_bytes: usize,
    at_least_one: bool,
) -> (Vec<T>, bool, usize) {
    let (mut keep, mut bytes) = (0, 0usize);
    for item in items.iter().take(limit) {
        let n = bytes.saturating_add(size(item));
        if n > max_bytes && !(keep == 0 && at_least_one) {
            break;
        }
        keep += 1;
        bytes = n;
    }
    let more = items.len() > keep;
    items.truncate(keep);
    (items, more, bytes)
}

/// One page of a log's records after `after`: at most `limit` records and
/// [`MAX_PAGE_BYTES`] of ciphertext.
pub(crate) async fn records(
    state: &AppState,
    log_id: Id32,
    after: i64,
    limit: u32,
) -> StoreResult<RecordsPage> {
    let page = state
        .store()
        .read_records(log_id, after, limit.saturating_add(1), MAX_PAGE_BYTES)
        .await?;
    let (records, more, _) = cut(
        page.records,
        |r| r.ciphertext.0.len(),
        limit as usize,
        MAX_PAGE_BYTES,
        true,
    );
    Ok(RecordsPage {
        records,
        head_seq: page.head_seq,
        first_seq: page.first_seq,
        more,
    })
}

/// One page of a mailbox's envelopes after `after`: at most `limit` envelopes and
/// `max_bytes` of payload (at least one envelope if `at_least_one`). Returns the
/// page and the payload bytes in it. `reader` is the log and the device reading: a
/// `per-device` copy for another device is not in its pages.
pub(crate) async fn envelopes(
    state: &AppState,
    (log_id, reader): (Id32, Id32),
    mailbox_id: Id32,
    after: i64,
    limit: u32,
    max_bytes: usize,
    at_least_one: bool,
) -> StoreResult<(EnvelopesPage, usize)> {
    let envelopes = state
        .store()
        .read_envelopes(
            log_id,
            mailbox_id,
            reader,
            after,
            limit.saturating_add(1),
            max_bytes,
        )
        .await?;
    let (envelopes, more, bytes) = cut(
        envelopes,
        |e| e.payload.0.len(),
        limit as usize,
        max_bytes,
        at_least_one,
    );
    let page = EnvelopesPage {
        mailbox_id,
        envelopes,
        more,
    };
    Ok((page, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut_sizes(sizes: &[usize], limit: usize, max: usize, first: bool) -> (Vec<usize>, bool) {
        let (page, more, bytes) = cut(sizes.to_vec(), |n| *n, limit, max, first);
        assert_eq!(bytes, page.iter().sum::<usize>());
        (page, more)
    }

    #[test]
    fn a_page_holds_exactly_the_byte_bound_and_not_one_byte_more() {
        assert_eq!(cut_sizes(&[4, 4, 2], 10, 10, true), (vec![4, 4, 2], false));
        assert_eq!(cut_sizes(&[4, 4, 3], 10, 10, true), (vec![4, 4], true));
    }

    #[test]
    fn a_page_holds_at_most_limit_items() {
        assert_eq!(cut_sizes(&[1, 1, 1], 2, 100, true), (vec![1, 1], true));
        assert_eq!(cut_sizes(&[1, 1], 2, 100, true), (vec![1, 1], false));
    }

    #[test]
    fn an_item_larger_than_the_bound_goes_out_alone() {
        assert_eq!(cut_sizes(&[50, 1], 10, 10, true), (vec![50], true));
        assert_eq!(cut_sizes(&[50], 10, 10, true), (vec![50], false));
    }

    #[test]
    fn a_spent_batch_budget_yields_an_empty_page_that_says_more() {
        assert_eq!(cut_sizes(&[5, 1], 10, 4, false), (vec![], true));
        assert_eq!(cut_sizes(&[0, 5], 10, 0, false), (vec![0], true));
        assert_eq!(cut_sizes(&[], 10, 0, false), (vec![], false));
    }
}
