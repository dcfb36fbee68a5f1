//! Tests of the RocksDB store.

use super::*;

/// A store with the default options in a new temporary directory (removed when the
/// directory is dropped).
fn temp_store() -> Result<(tempfile::TempDir, RocksStore)> {
    temp_store_with(&DbOptions::default())
}

/// [`temp_store`] with `options`.
fn temp_store_with(options: &DbOptions) -> Result<(tempfile::TempDir, RocksStore)> {
    let dir = tempfile::tempdir().map_err(|source| LeafDbError::Io {
        context: "creating a temporary directory".into(),
        source,
    })?;
    let store = RocksStore::open(dir.path(), options)?;
    Ok((dir, store))
}

/// The size given to RocksDB's batch up front holds the whole batch, so building it never
/// grows and copies the buffer.
#[test]
fn batch_estimate_holds_the_encoded_batch() -> Result<()> {
    let (_dir, store) = temp_store()?;
    let mut batch = WriteBatch::default();
    for i in 0..1000u32 {
        // Long keys and values: their varint length prefixes take two bytes.
        let len = 1 + (i as usize * 7) % 300;
        batch.put(Table::AccountNodes, vec![1; len], vec![2; len * 2]);
        batch.delete(Table::StorageNodes, i.to_be_bytes().to_vec());
    }
    batch.delete_range(Table::Storage, vec![0; 32], vec![0xff; 32]);
    batch.put(Table::Meta, b"k".to_vec(), Vec::new());
    let estimate = batch.encoded_len_estimate();
    let encoded = store.rocks_batch(batch)?.size_in_bytes();
    assert!(encoded <= estimate, "encoded {encoded} > estimate {estimate}");
    assert!(estimate < encoded + encoded / 4, "estimate {estimate} far above {encoded}");
    Ok(())
}

/// Table files written past the page cache or through it hold the same keys once ingested:
/// values of odd sizes around the disk's block size, and files cut in the middle of a block.
#[test]
fn sorted_writes_read_back_with_direct_writes_or_without() -> Result<()> {
    for direct in [true, false] {
        let (_dir, store) = temp_store_with(&DbOptions::default().direct_writes(direct))?;
        let value = |i: u32| vec![i as u8; 4093 + (i as usize % 7)];
        let mut writer = store.sorted_writer(Table::Code)?;
        for i in 0..3000u32 {
            if i % 1000 == 999 {
                writer.cut()?;
            }
            writer.put(&i.to_be_bytes(), &value(i))?;
        }
        assert_eq!(writer.finish()?, 4, "direct writes {direct}: files ingested");
        for i in (0..3000u32).step_by(7) {
            let got = store.get(Table::Code, &i.to_be_bytes())?;
            assert_eq!(got, Some(value(i)), "direct writes {direct}: key {i}");
        }
        let keys = store.iter_from(Table::Code, &[]).count();
        assert_eq!(keys, 3000, "direct writes {direct}");
    }
    Ok(())
}

/// Blocks that fill one table's memtable again and again, and write a few bytes to
/// another: each flush takes every table, so the write-ahead log is freed each time and
/// stays at a file or two. Flushed one by one, the table written a little held every log
/// file since its first write (40 files here; checked).
#[test]
fn flushes_free_the_write_ahead_log() -> Result<()> {
    let (dir, store) = temp_store_with(&DbOptions::default().write_buffer_bytes(64 << 10))?;
    for block in 0..40u32 {
        let mut batch = WriteBatch::default();
        for i in 0..100u32 {
            batch.put(Table::AccountNodes, (block * 100 + i).to_be_bytes().to_vec(), vec![7; 1000]);
        }
        batch.put(Table::Meta, b"head".to_vec(), block.to_be_bytes().to_vec());
        store.write(batch, Durability::Logged)?;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let logs = || -> Result<usize> {
        let entries = std::fs::read_dir(dir.path())
            .map_err(|source| LeafDbError::Io { context: "listing the database".into(), source })?;
        Ok(entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .count())
    };
    // Obsolete log files go once the flushes they wait for are done.
    while store.background_busy()? || logs()? > 2 {
        if std::time::Instant::now() >= deadline {
            panic!("{} write-ahead log files after 60 s", logs()?);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Ok(())
}

/// A compaction that level 0 has made due counts as background work until it is done.
#[test]
fn background_work_is_seen_until_it_is_done() -> Result<()> {
    let (_dir, store) = temp_store()?;
    assert!(!store.background_busy()?, "a new store has nothing to do");
    // Four flushed memtables over the same keys: level 0 reaches RocksDB's default
    // compaction trigger of four files.
    for round in 0..4u8 {
        let mut batch = WriteBatch::default();
        for i in 0..2000u32 {
            batch.put(Table::AccountNodes, i.to_be_bytes().to_vec(), vec![round; 64]);
        }
        store.write(batch, Durability::Unlogged)?;
        store.flush()?;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store.background_busy()? {
        assert!(std::time::Instant::now() < deadline, "compaction not done in 60 s");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let level0 = store.files_per_level(Table::AccountNodes)?[0];
    assert!(level0 < 4, "not busy with {level0} files in level 0");
    Ok(())
}

/// A range served to a peer leaves the data blocks it reads out of the block cache, where the
/// same range read with `iter_from` fills it with them. The served reads may bring in index
/// partitions (the table files carry a partitioned index): 16 KiB here, against 4 MB of data.
#[test]
fn served_ranges_do_not_fill_the_block_cache() -> Result<()> {
    /// Most bytes the served reads may add: a few index partitions, no data blocks.
    const METADATA: u64 = 64 << 10;
    let (_dir, store) = temp_store()?;
    let mut batch = WriteBatch::default();
    for i in 0..4000u32 {
        batch.put(Table::Storage, i.to_be_bytes().to_vec(), vec![7; 1000]);
    }
    store.write(batch, Durability::Unlogged)?;
    store.flush()?;
    let usage = || -> Result<u64> {
        let cf = store.cf(Table::Storage)?;
        let bytes = store.db.property_int_value_cf(cf, "rocksdb.block-cache-usage");
        Ok(bytes.map_err(store.storage())?.unwrap_or(0))
    };
    let snap = store.snapshot();
    let before = usage()?;
    assert_eq!(snap.range_from(Table::Storage, &[], Reading::Serve).count(), 4000);
    let mut cursor = snap.range_cursor(Table::Storage, &[], Reading::Serve)?;
    cursor.skip_to(&3999u32.to_be_bytes())?;
    assert!(cursor.current().is_some());
    let served = usage()?;
    assert!(served < before + METADATA, "served reads filled the cache: {before} → {served}");
    assert_eq!(snap.iter_from(Table::Storage, &[]).count(), 4000);
    let plain = usage()?;
    assert!(plain > served + (1 << 20), "a plain range fills it: {served} → {plain}");
    Ok(())
}
