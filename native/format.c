/* format.c - CRC32C (hardware where the CPU has it, chosen at run time; slicing-by-8
 * otherwise), SipHash-1-3, record and header checksums, header validation.
 * Pure functions over bytes: no OS calls, no state besides the lazily built CRC tables.
 */
#include "format.h"
#include "mmkv.h"

#include <string.h>

/* ---- CRC32C (Castagnoli, reflected polynomial 0x82F63B78) ---- */

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static int crc_have_hw;

/* Large buffers are checksummed in three interleaved lanes of CRC_LANE bytes (the crc32
 * instruction has a latency of three cycles and a throughput of one, so one chain runs at a
 * third of the unit's speed), then combined: for the raw register, crc(r, A.B) is
 * shift(crc(r, A), |B|) ^ crc(0, B), and crc_shift_tab applies shift by CRC_LANE bytes. */
#define CRC_LANE 4096
static uint32_t crc_shift_tab[4][256];

/* The raw register r after CRC_LANE zero bytes. */
static uint32_t crc_zeros(uint32_t r)
{
    for (int i = 0; i < CRC_LANE; i++)
        r = (r >> 8) ^ crc_table[0][r & 0xFF];
    return r;
}

static void crc_shift_init(void)
{
    uint32_t basis[32];
    for (int b = 0; b < 32; b++)
        basis[b] = crc_zeros(1u << b);   /* the shift is linear: build it from single bits */
    for (int k = 0; k < 4; k++)
        for (uint32_t v = 0; v < 256; v++) {
            uint32_t out = 0;
            for (int b = 0; b < 8; b++)
                if (v & (1u << b))
                    out ^= basis[8 * k + b];
            crc_shift_tab[k][v] = out;
        }
}

static uint32_t crc_shift(uint32_t r)
{
    return crc_shift_tab[0][r & 0xFF] ^ crc_shift_tab[1][(r >> 8) & 0xFF] ^
           crc_shift_tab[2][(r >> 16) & 0xFF] ^ crc_shift_tab[3][r >> 24];
}

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
#if defined(__x86_64__)
    __builtin_cpu_init();
    crc_have_hw = __builtin_cpu_supports("sse4.2");
#endif
    crc_shift_init();
}

static uint32_t crc_soft(uint32_t crc, const uint8_t *p, size_t len)
{
    while (len && ((uintptr_t)p & 7)) {
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xFF];
        len--;
    }
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;
        crc = crc_table[7][w & 0xFF] ^ crc_table[6][(w >> 8) & 0xFF] ^
              crc_table[5][(w >> 16) & 0xFF] ^ crc_table[4][(w >> 24) & 0xFF] ^
              crc_table[3][(w >> 32) & 0xFF] ^ crc_table[2][(w >> 40) & 0xFF] ^
              crc_table[1][(w >> 48) & 0xFF] ^ crc_table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xFF];
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t len)
{
    uint64_t c = crc;
    while (len && ((uintptr_t)p & 7)) {
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
        len--;
    }
    for (; len >= 3 * CRC_LANE; p += 3 * CRC_LANE, len -= 3 * CRC_LANE) {
        uint64_t c1 = 0, c2 = 0, w0, w1, w2;
        for (size_t i = 0; i < CRC_LANE; i += 8) {
            memcpy(&w0, p + i, 8);
            memcpy(&w1, p + CRC_LANE + i, 8);
            memcpy(&w2, p + 2 * CRC_LANE + i, 8);
            c = __builtin_ia32_crc32di(c, w0);
            c1 = __builtin_ia32_crc32di(c1, w1);
            c2 = __builtin_ia32_crc32di(c2, w2);
        }
        c = crc_shift(crc_shift((uint32_t)c) ^ (uint32_t)c1) ^ (uint32_t)c2;
    }
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        len -= 8;
    }
    while (len--)
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return (uint32_t)c;
}
#endif

uint32_t fmt_crc32c(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&crc_once, crc_init);
    crc = ~crc;
#if defined(__x86_64__)
    if (crc_have_hw)
        return ~crc_hw(crc, data, len);
#endif
    return ~crc_soft(crc, data, len);
}

/* ---- SipHash-1-3: one compression round, three finalisation rounds ---- */

#define SIP_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIP_ROUND(v0, v1, v2, v3)                                                           \
    do {                                                                                    \
        v0 += v1; v1 = SIP_ROTL(v1, 13); v1 ^= v0; v0 = SIP_ROTL(v0, 32);                   \
        v2 += v3; v3 = SIP_ROTL(v3, 16); v3 ^= v2;                                          \
        v0 += v3; v3 = SIP_ROTL(v3, 21); v3 ^= v0;                                          \
        v2 += v1; v1 = SIP_ROTL(v1, 17); v1 ^= v2; v2 = SIP_ROTL(v2, 32);                   \
    } while (0)

uint64_t fmt_siphash13(const uint8_t key[16], const void *data, size_t len)
{
    uint64_t k0, k1, m;
    memcpy(&k0, key, 8);
    memcpy(&k1, key + 8, 8);
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    const uint8_t *p = data;
    size_t left = len;
    for (; left >= 8; p += 8, left -= 8) {
        memcpy(&m, p, 8);
        v3 ^= m;
        SIP_ROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < left; i++)
        b |= (uint64_t)p[i] << (8 * i);
    v3 ^= b;
    SIP_ROUND(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- records and header ---- */

uint32_t fmt_record_crc(const struct fmt_record *r)
{
    const uint8_t *p = (const uint8_t *)r + 4;
    size_t len = sizeof(*r) - 4;
    if (r->type == FMT_PUT || r->type == FMT_DEL)
        len += (size_t)r->klen + r->vlen;
    return fmt_crc32c(0, p, len);
}

uint32_t fmt_header_crc(const struct fmt_header *h)
{
    return fmt_crc32c(0, h, offsetof(struct fmt_header, hdr_crc));
}

int fmt_header_validate(const struct fmt_header *h)
{
    if (memcmp(h->magic, FMT_MAGIC, 8) != 0)
        return MMKV_ENOTSTORE;
    if (h->version != FMT_VERSION || h->page_size != FMT_PAGE)
        return MMKV_ENOTSTORE;
    if (fmt_header_crc(h) != h->hdr_crc)
        return MMKV_ECORRUPT;
    if (h->max_key_len == 0 || h->max_key_len > FMT_MAX_KLEN || h->max_value_len > FMT_MAX_VLEN)
        return MMKV_ECORRUPT;
    return 0;
}

/* ---- record encoding ---- */

void fmt_record_header(struct fmt_record *r, int type, uint32_t klen, uint32_t vlen,
                       uint64_t seq, uint64_t epoch, uint64_t hash)
{
    r->type = (uint8_t)type;
    r->flags = 0;
    r->reserved = 0;
    r->klen = klen;
    r->vlen = vlen;
    r->seq = seq;
    r->epoch = (uint32_t)epoch;
    r->reserved2 = 0;
    r->hash = hash;
}

/* The one table-chunk writer: the TABLE record header of a chunk of 2^lg slots at r, whose
 * slots the caller has zeroed (or knows are zero: a fresh file); returns the slots. */
_Atomic uint64_t *fmt_table_init(struct fmt_record *r, unsigned lg, uint64_t seq, uint64_t epoch)
{
    uint64_t chunk = fmt_table_chunk_len(lg), cap = 1ull << lg;
    fmt_record_header(r, FMT_TABLE, 0, (uint32_t)(chunk - sizeof(*r)), seq, epoch, 0);
    memcpy((uint8_t *)r + sizeof(*r), &cap, 8);
    r->crc = fmt_record_crc(r);
    return (_Atomic uint64_t *)((uint8_t *)r + FMT_TABLE_SLOTS_OFF);
}
