#ifndef VEIL_CRC32C_H
#define VEIL_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/// Extends a CRC-32C (Castagnoli) over `len` bytes. Start with crc = 0.
/// Uses the SSE4.2 crc32 instruction when the CPU has it.
uint32_t veil_crc32c(uint32_t crc, const void *data, size_t len);

/// The portable table-driven implementation, exposed so tests can compare both paths.
uint32_t veil_crc32c_portable(uint32_t crc, const void *data, size_t len);

/// The hardware implementation; only valid when veil_crc32c_has_hardware() is non-zero.
uint32_t veil_crc32c_hardware(uint32_t crc, const void *data, size_t len);

/// Non-zero when the CPU supports SSE4.2.
int veil_crc32c_has_hardware(void);
#endif
