/* Freestanding <string.h> for the stub's C zstd decoder: the four functions it uses, provided
 * by Rust's compiler_builtins on the UEFI target. */
#ifndef ZBOOT_STRING_H
#define ZBOOT_STRING_H
#include <stddef.h>
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
#endif
