/* mmkv.h - the public C API of the mmkv core, and nothing else.
 *
 * A store is one file (or one POSIX shared-memory object) holding a header page, a lock
 * page and an append-only arena of CRC32C-checked records indexed by a hash table of
 * 8-byte atomic slots.  Readers take no lock; writers are serialised across processes by
 * one robust, process-shared mutex, owned per thread.  See docs/design.md for the protocols.
 *
 * Conventions of every function below:
 *   - returns 0 (or a non-negative count/length) on success, a negative MMKV_E* code, or
 *     -errno for a failed system call; results go to out-parameters;
 *   - never aborts, exits or prints; bytes read from the file are treated as hostile;
 *   - is thread-safe on one handle.  The Python binding calls it holding the GIL; the core
 *     lets other threads run only while it waits (for the lock, the disk, a compaction),
 *     through the hooks the binding installs (mmkv_set_wait_hooks, outside the cdef);
 *   - never waits for the writer lock longer than one slice (about 10 ms): past it, the
 *     call returns MMKV_EWAIT having done nothing, and the caller calls again (which lets
 *     Python run signal handlers and check timeouts between slices);
 *   - memory passed in stays owned by the caller; nothing returned must be freed except the
 *     handle itself (mmkv_free).
 *
 * The part between the cdef markers is read verbatim by mmkv/_build.py as the cffi cdef,
 * so it holds only declarations and integer #defines that cffi can parse.
 */
#ifndef MMKV_H
#define MMKV_H

#include <stddef.h>
#include <stdint.h>

/* cdef-begin */

/* Error codes live in a reserved negative range, clear of -errno. */
#define MMKV_ENOTFOUND   -30001  /* the key is absent */
#define MMKV_ECORRUPT    -30002  /* damage found in the file */
#define MMKV_ENOTSTORE   -30003  /* the file is not an mmkv store (magic, version, size) */
#define MMKV_ETOOBIG     -30004  /* key or value over the store's limit */
#define MMKV_ERDONLY     -30005  /* write on a handle opened with "r" */
#define MMKV_ECLOSED     -30006  /* the handle is closed */
#define MMKV_EFAULT      -30007  /* the mapping faulted (file truncated underneath: SIGBUS) */
#define MMKV_EBUFSIZE    -30008  /* the caller's buffer is too small; *need says how big */
#define MMKV_EVALUE      -30009  /* incr on a value that is not a decimal int64 */
#define MMKV_ERANGE      -30010  /* incr result outside int64 */
#define MMKV_EBUSY       -30011  /* not inside the caller's lock(): close of its handle, compact */
#define MMKV_EFULL       -30013  /* the hash table reached its maximum capacity */
#define MMKV_ENOTLOCKED  -30014  /* unlock without a matching lock on this handle */
#define MMKV_EINVAL      -30015  /* a bad argument (flag, option value) */
#define MMKV_EWAIT       -30016  /* the lock is taken: waited one slice, nothing done; call again */
#define MMKV_ELINKED     -30031  /* replacing refused (compaction, flag "n"): several hard links */

/* Open flags, as dbm's "r", "w", "c", "n"; OR in MMKV_OPEN_SHM for a shared-memory name. */
#define MMKV_OPEN_READ    1
#define MMKV_OPEN_WRITE   2
#define MMKV_OPEN_CREATE  3
#define MMKV_OPEN_NEW     4
#define MMKV_OPEN_SHM     256

typedef struct mmkv_store mmkv_store;

/* Tuning knobs; a zero field means "the default".  Only a new store takes the geometry. */
struct mmkv_options {
    uint64_t initial_capacity;   /* table slots of a new store (rounded up to a power of 2) */
    uint64_t max_value_len;      /* default 64 MiB, at most 1 GiB */
    uint32_t max_key_len;        /* default 65535, at most 16 MiB */
    int durable;                 /* 1: every write is on stable storage when it returns */
    int no_auto_compact;         /* 1: never compact on its own (see mmkv_compact) */
};

struct mmkv_stats {
    uint64_t count;              /* live keys */
    uint64_t file_size;          /* bytes allocated to the file */
    uint64_t tail;               /* end of the log */
    uint64_t reclaimable_bytes;  /* dead records, old tables, padding */
    uint64_t table_capacity;     /* slots of the current table */
    uint64_t table_used;         /* live + tombstone slots */
    uint64_t synced_tail;        /* log prefix known to be on stable storage */
    uint64_t seq;                /* sequence number of the last record */
    uint64_t epoch;
    uint64_t max_key_len;
    uint64_t max_value_len;
    uint64_t format_version;
    int64_t compaction_error;    /* this handle's last automatic compaction failure, 0: none */
};

struct mmkv_check_report {
    uint64_t records;            /* records walked in the log */
    uint64_t live;               /* live keys in the replay */
    uint64_t problems;           /* 0 when the store is sound */
};

/* Open or create a store.  flag: MMKV_OPEN_* (| MMKV_OPEN_SHM); mode: permission bits of a
 * new file; opt may be NULL.  On success *out is a handle to release with mmkv_close and
 * then mmkv_free.  Errors: MMKV_ENOTSTORE for a foreign file (left untouched),
 * MMKV_ECORRUPT for damage, -ENOENT for a missing store with "r"/"w", -errno otherwise. */
int mmkv_open(const char *path, int flag, unsigned mode, const struct mmkv_options *opt,
              mmkv_store **out);

/* Release the handle; the file is flushed and unmapped when the last handle of this process
 * on it goes.  The handle memory stays valid until mmkv_free.  Closing twice returns 0.
 * MMKV_EBUSY if the calling thread holds mmkv_lock taken through this handle. */
int mmkv_close(mmkv_store *s);
void mmkv_free(mmkv_store *s);

/* Copy the value of key into buf (capacity cap).  Returns the value length; if it is larger
 * than cap nothing was copied and the caller retries with a buffer of that size. */
int64_t mmkv_get(mmkv_store *s, const char *key, size_t klen, char *buf, size_t cap);
int mmkv_contains(mmkv_store *s, const char *key, size_t klen);   /* 1, 0 or error */
int64_t mmkv_count(mmkv_store *s);

int mmkv_put(mmkv_store *s, const char *key, size_t klen, const char *val, size_t vlen);
int mmkv_delete(mmkv_store *s, const char *key, size_t klen);     /* MMKV_ENOTFOUND */
int mmkv_clear(mmkv_store *s);

/* Atomic read-modify-write, each one operation under the writer lock.
 * pop: remove key and copy its value to buf; returns the value length, or a length larger
 *   than cap with nothing changed (retry with a bigger buffer).
 * setdefault: insert dflt if key is absent; copy the value now stored to buf (as pop).
 * popitem: remove some key; buf receives key then value, *klen_out the key length; returns
 *   klen + vlen (larger than cap: nothing changed); MMKV_ENOTFOUND when empty.
 * incr: the value is ASCII decimal int64 (absent = 0); stores and returns value + delta in
 *   *result.  MMKV_EVALUE / MMKV_ERANGE leave the value unchanged.
 * cas: swap when the current value equals expected (expected_absent: the key is absent);
 *   new_delete: delete instead of storing new.  Returns 1 if swapped, 0 if not. */
int64_t mmkv_pop(mmkv_store *s, const char *key, size_t klen, char *buf, size_t cap);
int64_t mmkv_setdefault(mmkv_store *s, const char *key, size_t klen, const char *dflt,
                        size_t dlen, char *buf, size_t cap);
int64_t mmkv_popitem(mmkv_store *s, char *buf, size_t cap, size_t *klen_out);
int mmkv_incr(mmkv_store *s, const char *key, size_t klen, int64_t delta, int64_t *result);
int mmkv_cas(mmkv_store *s, const char *key, size_t klen, int expected_absent,
             const char *expected, size_t elen, int new_delete, const char *nval, size_t nlen);

/* The store's writer lock, held across calls (Python's `with d.lock()`).  It belongs to the
 * calling thread for the whole process: that thread's calls through any handle on the same
 * file work inside it (recursion), other threads wait like other processes.  MMKV_EWAIT
 * after one slice of waiting (call again).  A thread that ends holding it releases it (the
 * next locker recovers it, as after a killed process).  mmkv_unlock must come from the
 * same thread through the same handle; it works even after mmkv_close. */
int mmkv_lock(mmkv_store *s);
int mmkv_unlock(mmkv_store *s);
/* How many mmkv_lock levels the calling thread holds through this handle (0 if none). */
int mmkv_lock_depth(mmkv_store *s);

/* Make every write so far, by any handle, durable (a no-op for shared memory). */
int mmkv_sync(mmkv_store *s);
int mmkv_stats(mmkv_store *s, struct mmkv_stats *out);

/* Iteration.  An iterator pins the file the handle uses when it begins (a compaction does
 * not unmap it while pinned) and gives that file's table descriptor.  mmkv_iter_scan walks
 * the slots of table `desc` of the pinned file from *pos up to `end` (0 = the table's
 * end), copying keys of live slots into buf (lengths into lens, at most max_keys of them)
 * and advancing *pos; *n gets the number of keys copied and *current the table descriptor
 * now in use in the pinned file, or 0 if the handle has moved to a compacted file (then
 * mmkv_iter_repin pins that one).  Old tables of a file stay readable while it is pinned,
 * which is what lets the caller resume after a rebuild.  A key that does not fit an empty
 * buf: MMKV_EBUFSIZE with *need set.  Returns 1 when *pos reached the end, 0 otherwise. */
typedef struct mmkv_iter mmkv_iter;
int mmkv_iter_begin(mmkv_store *s, mmkv_iter **out, uint64_t *desc);
int mmkv_iter_scan(mmkv_iter *it, uint64_t desc, uint64_t *pos, uint64_t end, char *buf,
                   size_t cap, uint32_t *lens, size_t max_keys, size_t *n, uint64_t *current,
                   size_t *need);
/* The same with values: each key in buf is followed by its value (checksum verified), whose
 * length goes to vlens. */
int mmkv_iter_scan_items(mmkv_iter *it, uint64_t desc, uint64_t *pos, uint64_t end, char *buf,
                         size_t cap, uint32_t *lens, uint32_t *vlens, size_t max_keys,
                         size_t *n, uint64_t *current, size_t *need);
int mmkv_iter_repin(mmkv_iter *it, uint64_t *desc);
void mmkv_iter_end(mmkv_iter *it);

/* Compaction: copy the live records into a new file beside the store, rename it over the
 * path, and retire the old file; other handles move to the new file on their next call.
 * Refused (MMKV_EBUSY) while the calling thread holds mmkv_lock; it cannot run while any
 * other thread or process holds it (it takes the lock: MMKV_EWAIT meanwhile). */
int mmkv_compact(mmkv_store *s);

/* Structural check: walks the whole log and the table; writes a report (NUL-terminated,
 * truncated to cap) of every problem found.  Returns 0 sound, MMKV_ECORRUPT otherwise.
 * A writable handle checks under the lock; a read-only one checks a consistent reading of
 * the header while others write, counting a write in progress (or interrupted by a crash)
 * as the next writer will finish it (recover.c), so neither is reported as damage. */
int mmkv_check(mmkv_store *s, char *report, size_t cap, struct mmkv_check_report *out);

/* Salvage: walk any file's log read-only, yielding every record that passes its checks
 * (header bounds, lengths, CRC32C, sequence increasing), resynchronising after damage.
 * Replaying the items in order (PUT sets, DEL removes, CLEAR empties) gives what can be
 * saved.  Used by `mmkv dump` on a damaged store; it never writes the file. */
typedef struct mmkv_salvage mmkv_salvage;
struct mmkv_salvage_item {
    uint64_t seq;
    uint32_t type;               /* 1 PUT, 2 DEL, 5 CLEAR */
    uint32_t klen;
    uint64_t vlen;
    uint64_t data_off;           /* key at buf + data_off, value right after it */
};
int mmkv_salvage_open(const char *path, mmkv_salvage **out);
/* The next batch, in log order: returns 1 at the end of the file, 0 if more remain;
 * MMKV_EBUFSIZE with *need when one record does not fit an empty buf. */
int mmkv_salvage_next(mmkv_salvage *h, char *buf, size_t cap, struct mmkv_salvage_item *items,
                      size_t max_items, size_t *n, size_t *need);
/* valid: records accepted so far; skipped: records known lost (sequence gaps) or damaged
 * regions, whichever is larger. */
void mmkv_salvage_counts(mmkv_salvage *h, uint64_t *valid, uint64_t *skipped);
void mmkv_salvage_close(mmkv_salvage *h);

/* The same walk without comparing the table to a replay of the log (constant memory):
 * every record of the log, and every record a slot points to, is valid. */
int mmkv_verify(mmkv_store *s, char *report, size_t cap, struct mmkv_check_report *out);

/* Consistent snapshot (`mmkv dump`): the contents at one moment, never inside another
 * process's lock() block, holding writers up for no longer than one write (see snapshot.c).
 * begin takes the moment and pins the file: a writable handle takes the lock for the time
 * of two loads; a read-only one cannot, and returns -EAGAIN while a live thread holds the
 * lock (call again after a short sleep).  *seq gets the seq of the moment.  next copies
 * keys into buf (lengths to klens, record offsets to offs, at most max_keys), unordered;
 * returns 1 when the last key was copied, 0 if more remain, MMKV_EBUFSIZE with *need when
 * one key does not fit an empty buf.  value copies the value of a record offset given by
 * next (its length; larger than cap: nothing copied).  The snapshot keeps 8 bytes per key
 * of the store; end releases it. */
typedef struct mmkv_snapshot mmkv_snapshot;
int mmkv_snapshot_begin(mmkv_store *s, mmkv_snapshot **out, uint64_t *seq);
int mmkv_snapshot_next(mmkv_snapshot *sn, char *buf, size_t cap, uint32_t *klens, uint64_t *offs,
                       size_t max_keys, size_t *n, size_t *need);
int64_t mmkv_snapshot_value(mmkv_snapshot *sn, uint64_t off, char *buf, size_t cap);
void mmkv_snapshot_end(mmkv_snapshot *sn);

/* Call in a child process after fork(): forget lock ownership inherited from the parent. */
void mmkv_after_fork_child(void);

/* Tests: how many fdatasync calls this process has made (durable=True, sync()). */
uint64_t mmkv_debug_sync_count(void);

/* Tests: make the nth upcoming call (1-based) of the os.c table entry named `call` fail
 * with -err without reaching the OS; nth = 0 clears every pending failure.  Names: "open",
 * "close", "fstat", "fallocate", "ftruncate", "fdatasync", "pwrite", "rename", "unlink",
 * "fsync_dir", "stat_ino", "fchmod", "seek_data", "seek_hole".  Returns 0, or MMKV_EINVAL for
 * an unknown name or err <= 0.  Arm it between operations, from one thread. */
int mmkv_debug_fail(const char *call, uint64_t nth, int err);

/* A static description of an MMKV_E* code or -errno. */
const char *mmkv_strerror(int rc);

/* ---- batches (issue 11) ----
 * Keys (and values) are passed packed one after another in one buffer, with their lengths
 * in arrays.
 * get_many: the values of keys[0..n), all as of one moment (never part of another write),
 *   packed in key order into buf; vlens[i] gets each length, -1 for a missing key.  Values
 *   that do not all fit cap: MMKV_EBUFSIZE with *need (retry bigger: the next snapshot may
 *   need more).  A read-only handle that keeps finding a batch half-published (its writer
 *   died and no writer has recovered it yet) gives up with -EAGAIN.
 * set_many: data holds key 0, value 0, key 1, value 1, ...; one write: all of it or none
 *   of it after any crash, and get_many never sees part of it.  A key given twice: the last
 *   value wins.  Any length over the store's limits: MMKV_ETOOBIG and nothing is written.
 * delete_many: removes the keys present; returns how many it removed (a key given twice
 *   counts once).  One write, as set_many. */
int mmkv_get_many(mmkv_store *s, const char *keys, const uint32_t *klens, size_t n, char *buf,
                  size_t cap, int64_t *vlens, size_t *need);
int mmkv_set_many(mmkv_store *s, const char *data, const uint32_t *klens, const uint32_t *vlens,
                  size_t n);
int64_t mmkv_delete_many(mmkv_store *s, const char *keys, const uint32_t *klens, size_t n);

/* ---- the log: watch() and range()'s index (issue 12) ----
 * A log reader pins the file the handle uses and walks its records from a byte offset.
 * mmkv_log_pos says where that file stands: seq (the header's; the last one once the file
 * is retired), end (records below it may be read: all of them are published), base_seq
 * and base_off (a compacted file's copy of the live records holds the seqs up to base_seq
 * and ends at base_off, where the file's own changes begin), and retired (a compaction
 * replaced the file: end is final; finish reading, then mmkv_log_repin).
 * mmkv_log_read: from *off (a record boundary, e.g. base_off or a previous *off) and *sub
 *   (0, or where a clear's listing stopped), copy up to max_items changes into items and
 *   buf: PUT (key, and the value when `values`), DEL (key), and for a CLEAR one DEL per key
 *   it removed, all with the CLEAR's seq (type 5 with no key: a clear written before clears
 *   named their table, meaning "every key").  Tables and padding are skipped.  *off and
 *   *sub advance past what was copied.  MMKV_EBUFSIZE with *need: one change does not fit
 *   an empty buf.  MMKV_ECORRUPT for a damaged record.
 * mmkv_log_find: *off = the first record after seq after_seq (or end); returns 1 (with *off
 *   = base_off) when the file no longer holds the changes after after_seq.
 * mmkv_log_wait: 1 at once when the log has records past off or the file is retired; else
 *   sleeps on the store's futex until a writer publishes, for at most min(timeout_ns,
 *   100 ms), and returns 0 (a signal also ends the sleep).  It never delays a writer.
 * mmkv_log_repin: move to the file the path names now; *lagged = 1 when changes between
 *   the two files were lost (the new file does not continue the old one's last seq).
 * mmkv_log_seq: the store's change counter (header seq), growing with every write.
 * mmkv_log_file_id: a number naming the file the handle reads now, the same for every
 *   handle of this process on that file (and mode); mmkv_log_pinned_id: the same for the
 *   file a log is pinned to.  While the log pins it, no other file gets its number. */
typedef struct mmkv_log mmkv_log;
struct mmkv_log_pos {
    uint64_t epoch;
    uint64_t seq;
    uint64_t end;
    uint64_t base_seq;
    uint64_t base_off;
    uint64_t retired;
};
struct mmkv_log_item {
    uint64_t seq;
    uint32_t type;               /* 1 PUT, 2 DEL, 5 CLEAR (every key) */
    uint32_t klen;
    uint64_t vlen;               /* of the value copied after the key (0 without values) */
    uint64_t data_off;           /* the key at buf + data_off */
};
int mmkv_log_open(mmkv_store *s, mmkv_log **out, struct mmkv_log_pos *pos);
int mmkv_log_read(mmkv_log *lg, uint64_t *off, uint64_t *sub, int values, char *buf, size_t cap,
                  struct mmkv_log_item *items, size_t max_items, size_t *n, size_t *need,
                  struct mmkv_log_pos *pos);
int mmkv_log_find(mmkv_log *lg, uint64_t after_seq, uint64_t *off);
int mmkv_log_wait(mmkv_log *lg, uint64_t off, uint64_t timeout_ns);
int mmkv_log_repin(mmkv_log *lg, struct mmkv_log_pos *pos, int *lagged);
void mmkv_log_close(mmkv_log *lg);
int64_t mmkv_log_seq(mmkv_store *s);
int64_t mmkv_log_file_id(mmkv_store *s);
int64_t mmkv_log_pinned_id(const mmkv_log *lg);

/* Tests: how many FUTEX_WAKE calls this process has made (writers with watchers asleep). */
uint64_t mmkv_debug_wake_count(void);

/* cdef-end */

/* For bindings (not in the cffi cdef): mmkv_get, with the destination asked for once the
 * value's length is known: alloc(ctx, vlen) returns where to copy it (NULL: -ENOMEM), and
 * may be called again if the read retries (a table rebuild meanwhile); the last call's
 * memory holds the value when the result (its length) is >= 0.  alloc runs inside the read
 * frame with the caller's locks held: it must not call into the store. */
typedef char *(*mmkv_alloc_fn)(void *ctx, size_t len);
int64_t mmkv_get_alloc(mmkv_store *s, const char *key, size_t klen, mmkv_alloc_fn alloc,
                       void *ctx);

/* mmkv_iter_scan_items with a destination per entry: fn(ctx, klen, vlen, &key_dst,
 * value_dst or NULL) returns 0 with where to copy (the core copies, after checking the
 * record), or -1 to stop (the scan returns -ENOMEM).  Keys only unless with_values. */
typedef int (*mmkv_entry_fn)(void *ctx, size_t klen, size_t vlen, char **kdst, char **vdst);
int mmkv_iter_scan_cb(mmkv_iter *it, uint64_t desc, uint64_t *pos, uint64_t end,
                      size_t max_keys, int with_values, mmkv_entry_fn fn, void *ctx, size_t *n,
                      uint64_t *current);

#endif
