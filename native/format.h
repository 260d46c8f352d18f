/* format.h - the on-disk format: header page, lock page, records, table chunks; CRC32C and
 * SipHash-1-3.  Every size and offset is pinned by a _Static_assert; everything is
 * little-endian and naturally aligned.  Nothing here touches the OS or holds state.
 */
#ifndef MMKV_FORMAT_H
#define MMKV_FORMAT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define FMT_PAGE          4096u
#define FMT_HDR_OFF       0u
#define FMT_LOCK_OFF      4096u
#define FMT_ARENA_OFF     8192u
#define FMT_VERSION       1u
#define FMT_MAGIC         "MMKV\0\r\n\x1a"
#define FMT_LOCK_MAGIC    0x4b434f4c564b4d4dull   /* "MMKVLOCK" */

#define FMT_DEFAULT_KLEN  65535u
#define FMT_MAX_KLEN      (16u << 20)
#define FMT_DEFAULT_VLEN  (64ull << 20)
#define FMT_MAX_VLEN      (1ull << 30)
#define FMT_MIN_CAP_LG    4u                  /* 16 slots */
#define FMT_MAX_CAP_LG    28u                 /* 2^28 slots: a 2 GiB table chunk */
#define FMT_DEFAULT_CAP_LG 10u

/* Header states (compaction retires a file) and intent states (commit.c). */
enum { FMT_ACTIVE = 0, FMT_RETIRING = 1, FMT_RETIRED = 2 };
enum { FMT_INTENT_NONE = 0, FMT_INTENT_RESERVE = 1, FMT_INTENT_COMMIT = 2, FMT_INTENT_SWAP = 3,
       FMT_INTENT_BATCH = 4 };

/* Page 0.  The first 128 bytes never change after creation and carry their own CRC. */
struct fmt_header {
    uint8_t magic[8];
    uint32_t version;
    uint32_t page_size;
    uint8_t uuid[16];
    uint8_t sipkey[16];
    uint64_t created_ns;
    uint32_t max_key_len;
    uint32_t flags;
    uint64_t max_value_len;
    uint8_t reserved0[52];
    uint32_t hdr_crc;                 /* CRC32C of bytes [0, 124) */
    /* atomic words, one cache line: readers load these */
    _Atomic uint64_t table_desc;      /* table chunk offset | log2(capacity) */
    _Atomic uint64_t tail;            /* end of the log; nothing below is rewritten */
    _Atomic uint64_t file_size;       /* bytes allocated (fallocate) */
    _Atomic uint64_t state;           /* FMT_ACTIVE / RETIRING / RETIRED */
    _Atomic uint64_t count;           /* live keys */
    _Atomic uint64_t garbage;         /* bytes a compaction would reclaim */
    _Atomic uint64_t seq;             /* seq of the last record */
    _Atomic uint64_t epoch;           /* +1 per recovery scan or compaction */
    /* writer bookkeeping and durability */
    _Atomic uint64_t table_used;      /* live + tombstone slots of the current table */
    _Atomic uint64_t synced_tail;     /* the log up to here is on stable storage */
    _Atomic uint64_t dirty;           /* 1 from the first open until the last clean close */
    uint8_t boot_id[16];              /* boot of the last read-write opener */
    _Atomic uint64_t compact_tag;     /* nonzero: a compaction into PATH.compact-TAG runs */
    _Atomic uint64_t sync_mark;       /* tail made durable by the last durable-write sync */
    uint8_t reserved1[8];
    /* intent: what a roll-forward needs to finish a write whose writer died (commit.c) */
    _Atomic uint64_t intent;
    uint64_t i_reserve_off;
    uint64_t i_reserve_len;
    uint64_t i_slot_off;
    uint64_t i_new_w;
    uint64_t i_new_tail;
    uint64_t i_new_count;
    uint64_t i_new_garbage;
    uint64_t i_new_seq;
    uint64_t i_new_used;
    uint64_t i_new_desc;
    /* batches, snapshots and watching (zero in files written before them) */
    _Atomic uint64_t snap;            /* seqlock: odd while a batch publishes, +2 per write */
    _Atomic uint32_t wake;            /* futex word: +1 after every publish and at retirement */
    _Atomic uint32_t watchers;        /* watchers asleep on `wake`; 0: writers make no syscall */
    _Atomic uint64_t published;       /* the log up to here is visible to readers (0: = tail) */
    uint64_t base_seq;                /* compacted file: records up to this seq are the copy */
    uint64_t base_off;                /* compacted file: the first record after the copy */
    uint64_t i_plan_off;              /* intent BATCH: the plan record (slot offset, word) pairs */
    uint64_t i_plan_count;
};

_Static_assert(sizeof(_Atomic uint64_t) == 8, "8-byte atomics");
_Static_assert(offsetof(struct fmt_header, hdr_crc) == 124, "header crc offset");
_Static_assert(offsetof(struct fmt_header, table_desc) == 128, "atomic words on their own line");
_Static_assert(offsetof(struct fmt_header, table_used) == 192, "bookkeeping offset");
_Static_assert(offsetof(struct fmt_header, intent) == 256, "intent offset");
_Static_assert(offsetof(struct fmt_header, snap) == 344, "batch words offset");
_Static_assert(sizeof(struct fmt_header) == 400, "header size");
_Static_assert(sizeof(struct fmt_header) <= FMT_PAGE, "header fits its page");

/* Page 1: the writer mutex, stamped with where and when it was initialised. */
struct fmt_lockpage {
    uint64_t magic;
    uint8_t boot_id[16];
    uint64_t dev;
    uint64_t ino;
    uint64_t generation;
    uint8_t reserved[16];
    pthread_mutex_t mutex;
    uint8_t pad[128 - 64 - sizeof(pthread_mutex_t)];
    /* who holds the mutex, for reports only (recursion is decided in-process, lock.c):
     * the PID namespace inode and thread id there, unique across containers */
    _Atomic uint64_t owner_ns;
    _Atomic uint64_t owner_tid;
};

_Static_assert(offsetof(struct fmt_lockpage, mutex) == 64, "mutex offset");
_Static_assert(offsetof(struct fmt_lockpage, owner_ns) == 128, "lock owner offset");
_Static_assert(sizeof(struct fmt_lockpage) <= FMT_PAGE, "lock page fits");

/* A record in the arena.  crc covers everything after itself up to the end of the value for
 * PUT and DEL, and the header alone for TABLE, PAD and CLEAR (their bodies are not data). */
enum { FMT_PUT = 1, FMT_DEL = 2, FMT_TABLE = 3, FMT_PAD = 4, FMT_CLEAR = 5 };

/* flags: FMT_FLAG_BATCH on every record of a batch (set_many, delete_many), whose first
 * record holds in reserved2 the number of records of the batch, the last being its plan (a
 * PAD whose body lists the slots to publish).  A log walk applies a batch whole or not. */
#define FMT_FLAG_BATCH 1u

struct fmt_record {
    uint32_t crc;
    uint8_t type;
    uint8_t flags;
    uint16_t reserved;
    uint32_t klen;
    uint32_t vlen;
    uint64_t seq;
    uint32_t epoch;
    uint32_t reserved2;
    uint64_t hash;
};

_Static_assert(sizeof(struct fmt_record) == 40, "record header size");

/* A table chunk: a page-aligned TABLE record (vlen = bytes after the header), its capacity,
 * then the slots at +64.  Slot word: 0 EMPTY, 1 TOMB, else (record off / 8) << 20 | tag. */
#define FMT_TABLE_SLOTS_OFF 64u
#define FMT_EMPTY 0ull
#define FMT_TOMB 1ull

static inline uint64_t fmt_align8(uint64_t n) { return (n + 7u) & ~7ull; }
static inline uint64_t fmt_align_page(uint64_t n) { return (n + FMT_PAGE - 1) & ~(uint64_t)(FMT_PAGE - 1); }
static inline uint64_t fmt_record_len(uint64_t klen, uint64_t vlen) { return fmt_align8(40 + klen + vlen); }
static inline uint64_t fmt_table_chunk_len(unsigned lg) { return fmt_align_page(FMT_TABLE_SLOTS_OFF + (8ull << lg)); }
static inline uint64_t fmt_desc(uint64_t off, unsigned lg) { return off | lg; }
static inline uint64_t fmt_desc_off(uint64_t desc) { return desc & ~(uint64_t)(FMT_PAGE - 1); }
static inline unsigned fmt_desc_lg(uint64_t desc) { return (unsigned)(desc & 63u); }
/* A descriptor whose chunk could lie in a file: known capacity, offset in the arena and far
 * from wrapping (a hostile descriptor must not make `off + size` overflow). */
static inline int fmt_desc_sane(uint64_t desc)
{
    uint64_t off = fmt_desc_off(desc);
    unsigned lg = fmt_desc_lg(desc);
    return lg >= FMT_MIN_CAP_LG && lg <= FMT_MAX_CAP_LG && off >= FMT_ARENA_OFF && off < (1ull << 56);
}
static inline uint32_t fmt_tag(uint64_t hash) { return (uint32_t)(hash >> 44); }
static inline uint64_t fmt_slot_word(uint64_t off, uint64_t hash) { return ((off >> 3) << 20) | fmt_tag(hash); }
static inline uint64_t fmt_slot_off(uint64_t w) { return (w >> 20) << 3; }
static inline uint32_t fmt_slot_tag(uint64_t w) { return (uint32_t)(w & 0xFFFFFu); }

uint32_t fmt_crc32c(uint32_t crc, const void *data, size_t len);
uint64_t fmt_siphash13(const uint8_t key[16], const void *data, size_t len);

/* CRC of a record as it must be stored (covers what the type says). */
uint32_t fmt_record_crc(const struct fmt_record *r);
void fmt_record_header(struct fmt_record *r, int type, uint32_t klen, uint32_t vlen,
                       uint64_t seq, uint64_t epoch, uint64_t hash);
_Atomic uint64_t *fmt_table_init(struct fmt_record *r, unsigned lg, uint64_t seq, uint64_t epoch);
uint32_t fmt_header_crc(const struct fmt_header *h);

/* Check the immutable header part: 0, MMKV_ENOTSTORE (not ours) or MMKV_ECORRUPT. */
int fmt_header_validate(const struct fmt_header *h);

#endif
