# Sourced by smoke.sh and check.sh: points librocksdb-sys at the RocksDB library the workspace's
# build already compiled (in $CARGO_TARGET_DIR or ../target), so that the fuzz workspace does not
# compile RocksDB's C++ again (~16 minutes on 2 cores). Sets ROCKSDB_LIB_DIR and ROCKSDB_STATIC
# unless ROCKSDB_LIB_DIR or ROCKSDB_COMPILE is already set; says so when no library is found.
if [ -z "${ROCKSDB_LIB_DIR:-}" ] && [ -z "${ROCKSDB_COMPILE:-}" ]; then
    lib=$(ls -t "${CARGO_TARGET_DIR:-../target}"/{debug,release}/build/librocksdb-sys-*/out/librocksdb.a \
        2>/dev/null | head -n 1 || true)
    if [ -n "$lib" ]; then
        echo "fuzz: linking the workspace's $lib"
        # Absolute: librocksdb-sys's build script runs in another directory.
        ROCKSDB_LIB_DIR="$(cd "${lib%/librocksdb.a}" && pwd)"
        export ROCKSDB_LIB_DIR ROCKSDB_STATIC=1
    else
        echo "fuzz: no librocksdb.a from the workspace's build; RocksDB is compiled for the fuzz build"
    fi
fi
