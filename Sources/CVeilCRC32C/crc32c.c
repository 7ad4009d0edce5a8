#include "veil_crc32c.h"
#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define VEIL_X86 1
#endif

static uint32_t table[8][256];
static int table_ready = 0;

static void build_tables(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = table[0][n];
        for (int k = 1; k < 8; k++) {
            c = table[0][c & 0xff] ^ (c >> 8);
            table[k][n] = c;
        }
    }
    __atomic_store_n(&table_ready, 1, __ATOMIC_RELEASE);
}

uint32_t veil_crc32c_portable(uint32_t crc, const void *data, size_t len) {
    if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE)) build_tables();
    const unsigned char *p = data;
    crc = ~crc;
    // Slicing-by-8: eight bytes per step keeps the fallback within a few x of hardware.
    while (len >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        uint32_t lo = (uint32_t)word ^ crc;
        uint32_t hi = (uint32_t)(word >> 32);
        crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^
              table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^ table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--) crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#ifdef VEIL_X86
/* The crc32 instruction has a latency of three cycles but can start one per cycle, so
   long inputs are checksummed as three interleaved blocks whose CRCs are then combined:
   crc(c, A B C) = shift(shift(crc(c, A)) ^ crc(0, B)) ^ crc(0, C), where shift(x) is the
   CRC register x carried over VEIL_CRC_BLOCK zero bytes, a linear map kept as four
   byte-indexed tables. (Register values here are the raw ones, without the inversions.) */
#define VEIL_CRC_BLOCK 4096
static uint32_t shift_table[4][256];
static pthread_once_t shift_once = PTHREAD_ONCE_INIT;

__attribute__((target("sse4.2")))
static void make_shift_table(void) {
    for (int k = 0; k < 4; k++) {
        for (uint32_t b = 0; b < 256; b++) {
            uint64_t c = (uint64_t)b << (8 * k);
            for (int i = 0; i < VEIL_CRC_BLOCK; i += 8) c = __builtin_ia32_crc32di(c, 0);
            shift_table[k][b] = (uint32_t)c;
        }
    }
}

static inline uint32_t shift_block(uint32_t c) {
    return shift_table[0][c & 0xff] ^ shift_table[1][(c >> 8) & 0xff]
         ^ shift_table[2][(c >> 16) & 0xff] ^ shift_table[3][c >> 24];
}

__attribute__((target("sse4.2")))
uint32_t veil_crc32c_hardware(uint32_t crc, const void *data, size_t len) {
    const unsigned char *p = data;
    uint64_t c = ~crc;
    if (len >= 3 * VEIL_CRC_BLOCK) pthread_once(&shift_once, make_shift_table);
    while (len >= 3 * VEIL_CRC_BLOCK) {
        uint64_t c0 = c, c1 = 0, c2 = 0;
        for (size_t i = 0; i < VEIL_CRC_BLOCK; i += 8) {
            uint64_t w0, w1, w2;
            memcpy(&w0, p + i, 8);
            memcpy(&w1, p + VEIL_CRC_BLOCK + i, 8);
            memcpy(&w2, p + 2 * VEIL_CRC_BLOCK + i, 8);
            c0 = __builtin_ia32_crc32di(c0, w0);
            c1 = __builtin_ia32_crc32di(c1, w1);
            c2 = __builtin_ia32_crc32di(c2, w2);
        }
        c = shift_block(shift_block((uint32_t)c0) ^ (uint32_t)c1) ^ (uint32_t)c2;
        p += 3 * VEIL_CRC_BLOCK;
        len -= 3 * VEIL_CRC_BLOCK;
    }
    while (len >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}

int veil_crc32c_has_hardware(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c & bit_SSE4_2) != 0;
}
#else
uint32_t veil_crc32c_hardware(uint32_t crc, const void *data, size_t len) {
    return veil_crc32c_portable(crc, data, len);
}
int veil_crc32c_has_hardware(void) { return 0; }
#endif

static int hw_state = -1;

uint32_t veil_crc32c(uint32_t crc, const void *data, size_t len) {
    int hw = __atomic_load_n(&hw_state, __ATOMIC_RELAXED);
    if (hw < 0) {
        hw = veil_crc32c_has_hardware();
        __atomic_store_n(&hw_state, hw, __ATOMIC_RELAXED);
    }
    return hw ? veil_crc32c_hardware(crc, data, len) : veil_crc32c_portable(crc, data, len);
}
