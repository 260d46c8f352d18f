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
};

extern struct os_vtable os_vt;

int os_ofd_lock(int fd, int type, uint64_t start, int wait);   /* type: F_RDLCK/F_WRLCK/F_UNLCK */
void *os_reserve(size_t len);
int os_map_fixed(void *addr, size_t len, int fd, uint64_t off, int writable);
void *os_map(size_t len, int fd, uint64_t off, int writable);
void os_unmap(void *addr, size_t len);
void os_boot_id(uint8_t out[16]);
void os_random(void *buf, size_t len);
uint64_t os_now_ns(void);
int os_shm_path(const char *name, char *out, size_t cap);

/* ---- guard.c: the SIGBUS guard around every access to the mapping ---- */

int guard_install(void);
void guard_arm(sigjmp_buf *env);
void guard_disarm(void);

/* ---- the handle ---- */

/* One reservation of address space with the file mapped at its start.  A reservation is
 * replaced (never moved) when the file outgrows it; old ones are unmapped with their gen. */
struct mapping {
    uint8_t *base;
    size_t reserved_len;
    _Atomic size_t len;          /* bytes of the file mapped at base */
    struct mapping *older;
};

/* A generation: one open file behind a handle.  Compaction replaces the file at the path;
 * each handle then moves to a new gen.  A gen is pinned by every call using it (and by
 * iterators), and released (unmapped, closed) when the last pin goes, so a reader in
 * flight finishes on the old mapping while the next call already uses the new file. */
struct gen {
    int fd;
    uint64_t dev, ino;
    uint8_t sipkey[16];          /* copied from the validated header */
    uint32_t max_klen;
    uint64_t max_vlen;
    _Atomic(struct mapping *) map;
    pthread_mutex_t map_mu;      /* process-local: serialises mapping changes */
    struct fmt_lockpage *lockpg; /* own 4 KiB mapping; never moves while the mutex is held */
    _Atomic long refs;           /* pins, plus one while it is the handle's current gen */
    _Atomic int released;
    int readonly;
    struct gen *next;            /* every gen of the handle, freed at close */
};

struct mmkv_store {
    int readonly;
    int durable;
    int shm;
    int auto_compact;
    pid_t pid;                   /* the process that opened it (fork detection) */
    char *path;
    unsigned mode;
    _Atomic(struct gen *) gen;   /* the current file */
    struct gen *gens;            /* all gens ever used (structs live until close) */
    pthread_mutex_t switch_mu;   /* process-local: serialises moving to a new gen */
    _Atomic int inflight;        /* calls in progress; close waits for 0 */
    _Atomic int closed;
    _Atomic int user_locks;      /* mmkv_lock depth taken through this handle */
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

/* store.c: the mapping, gens, guarded calls, the operations */
void store_view(struct gen *g, struct view *v);
struct mapping *store_new_mapping(struct gen *g, uint64_t size);
void store_gen_release(struct gen *g);
int store_moved(mmkv_store *s, struct gen *g, uint64_t state);   /* must move off g? */
int store_switch(mmkv_store *s, struct gen *old);                 /* move to the path's file */
int store_extend(mmkv_store *s, struct view *v, uint64_t need);  /* map up to file_size */
struct gen *store_gen_pin(mmkv_store *s);
void store_gen_unpin(struct gen *g);
void store_gen_install(mmkv_store *s, struct gen *g);

/* open.c: opening, gens of new files, closing, fork */
int store_gen_open(mmkv_store *s, int fd, int flag, struct gen **out);
struct gen *store_gen_create(mmkv_store *s, int fd, uint64_t size);
void store_gen_discard(struct gen *g);

/* compact.c */
int compact_run(mmkv_store *s, struct view *v);       /* under the lock of v's gen */
int compact_resolve(mmkv_store *s, struct view *v);   /* lock holder finds state != ACTIVE */
int compact_wanted(const struct view *v);
uint64_t compact_reclaimable(const struct view *v);   /* bytes a compaction would free */

/* lock.c */
void lock_init(struct fmt_lockpage *lp, const uint8_t boot[16], uint64_t dev, uint64_t ino);
int lock_stamp_matches(const struct fmt_lockpage *lp, const uint8_t boot[16], uint64_t dev, uint64_t ino);
int lock_acquire(mmkv_store *s, struct view *v);
void lock_release(struct view *v);

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
void commit_write_header(struct fmt_record *r, int type, uint32_t klen, uint32_t vlen,
                         uint64_t seq, uint64_t epoch, uint64_t hash);

/* recover.c */
int recover_check(mmkv_store *s, struct view *v, char *report, size_t cap,
                  struct mmkv_check_report *out);
int recover_scan(mmkv_store *s, struct view *v);
int recover_verify(mmkv_store *s, struct view *v, char *report, size_t cap,
                   struct mmkv_check_report *out);      /* power loss: rebuild from the log */

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

/* commit.c: 1 if commit_recover would apply the pending COMMIT/SWAP intent */
int commit_intent_applies(const struct view *v, uint64_t state);

/* recover.c: the keys of the log's prefix [FMT_ARENA_OFF, end) as of its last record: *offs (malloc'd,
 * the caller frees) gets the offset of each key's newest record when it is a PUT, *n their
 * number.  Used by the consistent dump (snapshot.c). */
int recover_live_at(mmkv_store *s, struct view *v, uint64_t end, uint64_t **offs, uint64_t *n);

/* compaction errors of automatic compaction, kept per handle (store.c, compact.c) */
void compact_auto(mmkv_store *s, struct view *v);

#endif
