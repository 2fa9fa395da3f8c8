//! The store's recovery fed arbitrary bytes, in memory. The first byte picks what is attacked:
//!
//! - an entry as stored (`Entry::decode`): what decodes must encode back to the same entry;
//! - a checkpoint snapshot (`Ledger::from_snapshot`);
//! - a whole journal (length-prefixed entry blobs) replayed and audited from scratch.
//!
//! `store_restart` does the same to a real SQLite data directory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use points_core::{audit, Entry, Ledger};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            if let Ok(entry) = Entry::decode(bytes) {
                let again = Entry::decode(&entry.encode()).unwrap();
                assert_eq!(again, entry);
                let _ = entry.postings();
            }
        }
        1 => {
            if let Ok(ledger) = Ledger::from_snapshot(bytes) {
                let _ = ledger.next_sequence();
                let _ = Ledger::from_snapshot(&ledger.snapshot());
            }
        }
        _ => {
            // Length-prefixed entry blobs: a journal from scratch.
            let mut entries = Vec::new();
            let mut rest = bytes;
            while let Some((&len, tail)) = rest.split_first() {
                let len = usize::from(len).min(tail.len());
                if let Ok(entry) = Entry::decode(&tail[..len]) {
                    entries.push(entry);
                }
                rest = &tail[len..];
            }
            let _ = Ledger::replay(entries.iter());
            let _ = audit(entries.iter(), None);
        }
    }
});
