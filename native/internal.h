/* internal.h - what the core's files share: the handle, its view of the mapping, and the
 * functions each file exports to the others.  Not installed; not part of the C API.
 */
#ifndef MMKV_INTERNAL_H
#define MMKV_INTERNAL_H

#include "format.h"
#include "mmkv.h"

#include <setjmp.h>
#include <stdatomic.h>
#include <sys/types.h>

/* ---- os.c: the only file that calls the OS; every call goes through this table ---- */

struct os_vtable {
    int (*open)(const char *path, int flags, unsigned mode);
    int (*close)(int fd);
    int (*fstat_size)(int fd, uint64_t *size, uint64_t *dev, uint64_t *ino);
    int (*fallocate)(int fd, uint64_t off, uint64_t len);
    int (*ftruncate)(int fd, uint64_t len);
    int (*fdatasync)(int fd);
    int (*pwrite)(int fd, const void *buf, size_t len, uint64_t off);
    int (*rename)(const char *from, const char *to);
    int (*unlink)(const char *path);
    int (*fsync_dir)(const char *path);
    int (*stat_ino)(const char *path, uint64_t *dev, uint64_t *ino);
    int (*fchmod_like)(int from_fd, int to_fd);
    /* next data at or after off (SEEK_DATA): 0 with *out, -ENXIO when only a hole follows */
    int (*seek_data)(int fd, uint64_t off, uint64_t *out);
    int (*seek_hole)(int fd, uint64_t off, uint64_t *out);
    /* test hooks: negative controls and crash points, read from MMKV_TEST_* variables */
    int (*test_flag)(const char *name);                 /* MMKV_TEST_<name> is set */
    void (*crash_point)(const char *site, int step);    /* SIGKILL here if a test asks */
};

extern struct os_vtable os_vt;

/* Nonzero only when a test set MMKV_TEST_WRITE_KILL=N[:commit]: the write path then calls
 * crash_point("write", 0) between a record's RESERVE and its COMMIT and ("write", 1) after
 * the COMMIT intent, and the Nth write of the process SIGKILLs itself at the step asked.
 * Read once at load, so the hot path tests one word. */
extern int os_write_kill_armed;

int os_ofd_lock(int fd, int type, uint64_t start, int wait);   /* type: F_RDLCK/F_WRLCK/F_UNLCK */
void *os_reserve(size_t len);
int os_map_fixed(void *addr, size_t len, int fd, uint64_t off, int writable);
void *os_map(size_t len, int fd, uint64_t off, int writable);
void os_unmap(void *addr, size_t len);
void os_boot_id(uint8_t out[16]);
void os_random(void *buf, size_t len);
uint64_t os_now_ns(void);
int os_shm_path(const char *name, char *out, size_t cap);
int os_pread_all(int fd, void *buf, size_t len, uint64_t off);
int os_reopen(int fd, int readonly);
int os_replace_fd(int fd, int target);
int os_mutex_wait(pthread_mutex_t *m, uint64_t slice_ns);
void os_pause(void);
void os_thread_identity(uint64_t *ns_ino, uint64_t *tid);
void os_after_fork_child(void);

/* ---- guard.c: the SIGBUS guard around every access to the mapping ---- */

int guard_install(void);
void guard_reassert(void);
int64_t guard_run(int64_t (*fn)(void *ctx), void *ctx);   /* MMKV_EFAULT on SIGBUS */         /* ours again if another handler replaced it */
void guard_arm(sigjmp_buf *env);
void guard_disarm(void);

/* ---- wait.c: what a call does around a wait (the GIL hooks of the cffi preamble) ---- */

void wait_begin(void);           /* about to block: let other threads of the process run */
void wait_end(void);
void wait_unwind(void);          /* after a SIGBUS jump out of a wait: back to the caller's state */
void mmkv_set_wait_hooks(void *(*release)(void), void (*reacquire)(void *));

/* ---- the handle and the files it reaches ---- */

/* One reservation of address space with the file mapped at its start.  A reservation is
 * replaced (never moved) when the file outgrows it; old ones stay mapped with their gen. */
struct mapping {
    uint8_t *base;
    size_t reserved_len;
    _Atomic size_t len;          /* bytes of the file mapped at base */
    struct mapping *older;
};

/* A generation: one open file, shared by every handle of this process on that file (map.c
 * keeps them in a registry keyed by device, inode and access).  Compaction replaces the
 * file at the path; handles then move to the new file's gen.  A gen is counted by every
 * handle whose current file it is, every call and iterator using it, and a lock() holder;
 * the last to let go unmaps and closes it. */
struct gen {
    int fd;
    uint64_t dev, ino;
    uint8_t sipkey[16];          /* copied from the validated header */
    uint32_t max_klen;
    uint64_t max_vlen;
    _Atomic(struct mapping *) map;
    pthread_mutex_t map_mu;      /* process-local: serialises mapping changes */
    struct fmt_lockpage *lockpg; /* own 4 KiB mapping; never moves while the mutex is held */
    _Atomic long refs;
    int readonly;
    int shm;
    int registered;              /* listed in map.c's registry */
    /* the writer mutex as held by this process (lock.c): owner is the holding thread's
     * token, depth its recursion, user_depth the part taken by lock() (which pins the gen) */
    _Atomic uint64_t owner;
    uint32_t depth, user_depth;
    struct gen *next;            /* registry */
};

struct mmkv_store {
    int readonly;
    int durable;
    int shm;
    int auto_compact;
    char *path;
    unsigned mode;
    uint32_t max_klen;           /* the store's limits (the same in every file it moves to) */
    uint64_t max_vlen;
    _Atomic(struct gen *) gen;   /* the current file; changed under switch_mu */
    pthread_mutex_t switch_mu;   /* process-local: pinning and moving to a new gen */
    _Atomic int inflight;        /* calls in progress; close waits for 0 */
    _Atomic int closed;
    int user_locks;              /* lock() depth taken through this handle ... */
    uint64_t lock_token;         /* ... by this thread ... */
    struct gen *lock_gen;        /* ... on this file */
    uint64_t popitem_hint;       /* slot where popitem starts looking (under the lock) */
    struct mmkv_store *next_open;/* registry of open handles (fork) */
    /* issue 10: the last automatic compaction failure (0: none), and the backoff after it:
     * no new attempt on compact_retry_gen before its garbage passes compact_retry_garbage */
    int compact_error;
    struct gen *compact_retry_gen;
    uint64_t compact_retry_garbage;
};

/* A snapshot of the mapping of one gen, for one operation. */
struct view {
    uint8_t *base;
    uint64_t len;
    struct gen *g;
};

static inline struct fmt_header *view_hdr(const struct view *v) { return (struct fmt_header *)v->base; }

/* map.c: the mapping, its growth, and the gens (one per open file per process) */
void store_view(struct gen *g, struct view *v);
int store_extend(mmkv_store *s, struct view *v, uint64_t need);  /* map up to file_size */
struct gen *map_gen_new(int fd, int readonly, int shm);
int map_gen_map(struct gen *g, uint64_t size);
struct gen *map_gen_find(uint64_t dev, uint64_t ino, int readonly);   /* counted, or NULL */
void map_gen_register(struct gen *g);
struct gen *store_gen_pin(mmkv_store *s);                         /* NULL once closed */
void store_gen_unpin(struct gen *g);
void store_gen_install(mmkv_store *s, struct gen *g);            /* takes g's reference */
void store_gen_discard(struct gen *g);                           /* never registered */
struct gen *store_gen_create(mmkv_store *s, int fd, uint64_t size);
void map_after_fork_child(void);

/* call.c: the read and write frames every exported call enters */
typedef int64_t (*store_op)(mmkv_store *s, struct view *v, void *ctx);
int64_t call_read(mmkv_store *s, store_op fn, void *ctx);
int64_t call_write(mmkv_store *s, store_op fn, void *ctx);
int64_t call_plain(mmkv_store *s, store_op fn, void *ctx);       /* pinned + guarded only */
int store_moved(mmkv_store *s, struct gen *g, uint64_t state);   /* must move off g? */
int store_switch(mmkv_store *s, struct gen *old);                 /* move to the path's file */

/* open.c */
int store_gen_open(mmkv_store *s, int fd, int flag, struct gen **out);

/* compact.c */
int compact_run(mmkv_store *s, struct view *v);       /* under the lock of v's gen */
int compact_resolve(mmkv_store *s, struct view *v);   /* lock holder finds state != ACTIVE */
int compact_wanted(const struct view *v);
uint64_t compact_reclaimable(const struct view *v);   /* bytes a compaction would free */

/* lock.c */
void lock_init(struct fmt_lockpage *lp, const uint8_t boot[16], uint64_t dev, uint64_t ino);
int lock_stamp_matches(const struct fmt_lockpage *lp, const uint8_t boot[16], uint64_t dev, uint64_t ino);
uint64_t lock_token(void);                        /* this thread's owner identity in-process */
int lock_acquire(mmkv_store *s, struct view *v);  /* MMKV_EWAIT: not yet, call again */
void lock_release(struct view *v);
int lock_held_by_me(const struct gen *g);         /* this thread holds g's mutex */
int lock_user_take(mmkv_store *s, struct view *v);   /* after lock_acquire: it is lock()'s */
int lock_user_drop(mmkv_store *s);                    /* mmkv_unlock */

/* table.c */
struct table {
    uint64_t off;                /* chunk offset */
    uint64_t cap;
    _Atomic uint64_t *slots;
};

struct probe {
    uint64_t found;              /* slot index of the key, or UINT64_MAX */
    uint64_t free;               /* first TOMB or the EMPTY ending the run, or UINT64_MAX */
    const struct fmt_record *rec;/* the key's record when found */
};

int table_get(mmkv_store *s, struct view *v, uint64_t desc, struct table *t);
int table_record(mmkv_store *s, struct view *v, uint64_t w, const struct fmt_record **out);
int table_next_live(mmkv_store *s, struct view *v, const struct table *t, uint64_t *i,
                    uint64_t *w, const struct fmt_record **r);
int table_probe(mmkv_store *s, struct view *v, const struct table *t, uint64_t hash,
                const char *key, size_t klen, int writer, struct probe *p);
int table_make_room(mmkv_store *s, struct view *v);   /* rebuild if an insert would pass the load limit */
int table_reset(mmkv_store *s, struct view *v);       /* clear: CLEAR record + fresh empty table */
uint64_t table_initial_lg(uint64_t capacity);

/* commit.c */
struct change {
    uint64_t slot_off;           /* file offset of the slot to publish (the word itself
                                    follows from the record: its offset, or TOMB) */
    uint64_t new_count;
    uint64_t new_garbage;
    uint64_t new_used;
};

int commit_ensure_space(mmkv_store *s, struct view *v, uint64_t end);
int commit_record(mmkv_store *s, struct view *v, int type, uint64_t hash, const char *key,
                  size_t klen, const char *val, size_t vlen, struct change *c);
void commit_recover(struct view *v);

/* walk.c: the log walk and the replay of PUT, DEL and CLEAR records (check, scan, dump) */
struct replay {
    uint64_t *offs;              /* 0 = empty; else the newest PUT/DEL record of a key */
    uint8_t *seen;               /* check: referenced by a table slot */
    uint64_t cap, used;
    const uint8_t *base;
};
struct walk {
    uint64_t off, end;           /* next record; end of what may be walked */
    uint64_t seq, epoch;         /* last accepted seq (0: none yet), epoch */
    uint64_t max_epoch;
    uint64_t last_table;         /* offset of the newest TABLE record */
    uint64_t records, live_bytes;
    int skip_crc;                /* negative-control tests only (MMKV_TEST_SCAN_NO_CRC) */
    uint64_t batch_left;         /* records of the current batch still to come */
    int skip_batch;              /* negative-control tests only (MMKV_TEST_SCAN_NO_BATCH) */
    int ahead;                   /* inside walk_batch_whole's look-ahead */
};

const struct fmt_record *replay_rec(const struct replay *m, uint64_t off);
int replay_init(struct replay *m, const uint8_t *base, uint64_t cap);
void replay_free(struct replay *m);
int replay_add(struct replay *m, uint64_t off);
void replay_clear(struct replay *m);
uint64_t replay_find(const struct replay *m, const struct fmt_record *r);
uint64_t walk_len(const struct fmt_record *r);
int walk_kinds_ok(const struct fmt_record *r);
const struct fmt_record *walk_next(mmkv_store *s, const struct view *v, struct walk *w,
                             const char **why);
int walk_batch_whole(mmkv_store *s, const struct view *v, const struct walk *w,
                     const struct fmt_record *r);
int walk_apply(struct replay *m, struct walk *w, const struct fmt_record *r);
void walk_start(struct walk *w, const struct view *v, uint64_t end);
/* the keys of the log's prefix [FMT_ARENA_OFF, end) as of its last record: *offs (malloc'd,
 * the caller frees) gets the offset of each key's newest record when it is a PUT, *n their
 * number.  Used by the consistent dump (snapshot.c). */
int walk_live_at(mmkv_store *s, struct view *v, uint64_t end, uint64_t **offs, uint64_t *n);

/* check.c: the structural check (with a replay: memory grows with the keys) and the
 * verification walk (constant memory) */
int check_full(mmkv_store *s, struct view *v, char *report, size_t cap,
               struct mmkv_check_report *out);
int check_verify(mmkv_store *s, struct view *v, char *report, size_t cap,
                 struct mmkv_check_report *out);

/* recover.c: after a possible power loss, keep the log's longest valid prefix, rebuild */
int recover_scan(mmkv_store *s, struct view *v);

/* ---- batches, snapshots and the log readers (issues 11, 12): batch.c, log.c ---- */

/* os.c */
int os_futex_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t timeout_ns);
void os_futex_wake(_Atomic uint32_t *word);

/* store.c: the guarded call (read frame when write = 0, write frame otherwise) */

/* table.c: make room for `inserts` more keys before a batch probes (rebuild if needed) */
int table_reserve(mmkv_store *s, struct view *v, uint64_t inserts);

/* commit.c: one record of a batch, probed and placed by the caller */
struct batch_rec {
    const char *key;
    const char *val;
    uint32_t klen;
    uint32_t vlen;
    uint64_t hash;
    uint64_t slot_off;           /* the slot the record is published in */
    int type;                    /* FMT_PUT or FMT_DEL */
};

/* Append recs[0..n) and their plan as one batch and publish them all under one intent
 * (c->slot_off unused; counters as after the whole batch, plan and DEL records excluded). */
int commit_batch(mmkv_store *s, struct view *v, const struct batch_rec *recs, size_t n,
                 const struct change *c);
/* After the slots are published: the snapshot word, `published`, and the watchers. */
void commit_notify(struct fmt_header *h);
/* ---- issue 10 (containers, links, names): additions kept in one block ---- */

/* names.c: a temporary file's name beside path, `.mmkv-<tag>.<kind>`, fitting NAME_MAX */
int names_tmp_beside(const char *path, const char *kind, uint64_t tag, char *out, size_t cap);

/* os.c: the number of hard links of fd's file (st_nlink), or -errno */
int os_nlink(int fd);
/* os.c: -EPERM if fd's file is immutable or append-only (FS_IOC_GETFLAGS), else 0 */
int os_file_frozen(int fd);

/* os.c: 1 if reading a hole of fd's file through a mapping allocates nothing (not tmpfs) */
int os_holes_free_to_read(int fd);

/* sparse.c: the first bytes of a new store, whose table chunk [toff, toff + chunk) is left
 * unallocated (a hole) when it is large; the rest of [0, size) is allocated */
int sparse_allocate_new(int fd, uint64_t toff, uint64_t chunk, uint64_t size);
/* sparse.c: before a slot of a possibly sparse table is written for the first time,
 * allocate its page (a full disk is then ENOSPC here, never SIGBUS on the store) */
int sparse_slot_ready(struct view *v, uint64_t slot_off);

/* commit.c: 1 if commit_recover would apply the pending COMMIT/SWAP/BATCH intent (judged
 * within v's mapping: map up to file_size first for the next locker's answer) */
int commit_intent_applies(const struct view *v, uint64_t state);


/* compaction errors of automatic compaction, kept per handle (store.c, compact.c) */
void compact_auto(mmkv_store *s, struct view *v);

#endif
