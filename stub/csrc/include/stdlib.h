/* Freestanding <stdlib.h> for the stub's C zstd decoder. It decodes with a caller-provided
 * workspace (ZSTD_initStaticDCtx), so these are never called; stub/src/decode/zstd_c.rs defines
 * them to fail (malloc returns NULL). */
#ifndef ZBOOT_STDLIB_H
#define ZBOOT_STDLIB_H
#include <stddef.h>
void *malloc(size_t n);
void *calloc(size_t n, size_t size);
void free(void *p);
#endif
