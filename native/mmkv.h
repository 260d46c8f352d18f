/* mmkv.h - the public C API of the mmkv core, and nothing else.
 *
 * A store is one file (or one POSIX shared-memory object) holding a header page, a lock
 * page and an append-only arena of CRC32C-checked records indexed by a hash table of
 * 8-byte atomic slots.  Readers take no lock; writers are serialised across processes by
 * one robust, recursive, process-shared mutex.  See shared/DESIGN.md for the protocols.
 *
 * Conventions of every function below:
 *   - returns 0 (or a non-negative count/length) on success, a negative MMKV_E* code, or
 *     -errno for a failed system call; results go to out-parameters;
 *   - never aborts, exits or prints; bytes read from the file are treated as hostile;
 *   - is thread-safe on one handle: the Python binding calls it with the GIL released;
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
#define MMKV_EBUSY       -30011  /* close refused: a thread of this process holds lock() */
#define MMKV_EFULL       -30013  /* the hash table reached its maximum capacity */
#define MMKV_ENOTLOCKED  -30014  /* unlock without a matching lock on this handle */
#define MMKV_EINVAL      -30015  /* a bad argument (flag, option value) */
#define MMKV_ELINKED     -30031  /* compaction refused: the file has more than one hard link */

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

/* Flush and release the mappings and file; the handle memory stays valid until mmkv_free.
 * Closing twice returns 0.  MMKV_EBUSY if a thread of this process holds mmkv_lock on it. */
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

/* The store's writer lock, held across calls (Python's `with d.lock()`); recursive.  Must be
 * released by the thread that took it. */
int mmkv_lock(mmkv_store *s);
int mmkv_unlock(mmkv_store *s);

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
 * Refused (MMKV_EBUSY) while this thread holds mmkv_lock. */
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

/* A static description of an MMKV_E* code or -errno. */
const char *mmkv_strerror(int rc);

/* cdef-end */

#endif
