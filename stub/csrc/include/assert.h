/* Freestanding <assert.h>: assertions are compiled out (DEBUGLEVEL 0, NDEBUG). */
#ifndef ZBOOT_ASSERT_H
#define ZBOOT_ASSERT_H
#define assert(x) ((void)0)
#endif
