/* cloudboot loader, armv7 only: the integer division helpers of the Windows-on-ARM runtime.
 *
 * clang's thumbv7-*-windows target lowers every `/` and `%` it cannot do in hardware (the
 * armv7-A baseline has no UDIV: Cortex-A8/A9 lack it) to calls into the MSVC runtime, which a
 * UEFI application does not have.  cloudboot/loader/compile.py links this file into the armv7
 * builds only.
 *
 * The convention is not AAPCS's, read off clang 14's call sites (llvm-objdump):
 *   __rt_udiv    in:  r0 = divisor, r1 = dividend
 *                out: r0 = quotient, r1 = remainder
 *   __rt_udiv64  in:  r0:r1 = divisor, r2:r3 = dividend            (low word first)
 *                out: r0:r1 = quotient, r2:r3 = remainder
 * The divisor comes first, and the caller has already trapped a zero divisor (`udf #249`,
 * clang's __brkdiv0) before it calls.  AAPCS returns a 64-bit value in r0 (low) : r1 (high),
 * so __rt_udiv is plain C returning remainder << 32 | quotient.  __rt_udiv64's remainder in
 * r2:r3 has no C spelling: a few Thumb-2 instructions call the C routine with a pointer to a
 * stack slot and load the remainder from it.  tests/unit/test_loader_rt_arm.py runs clang's
 * own call sites against these functions under qemu-arm.
 *
 * No `/` or `%` in this file (they would call these very functions), and no VFP/NEON: the
 * loader is built with -mfpu=none.  Signed division (__rt_sdiv, __rt_sdiv64) is not used by
 * the loaders; the link fails by name if it ever is. */
#include "../include/efi.h"

#if !defined(__arm__)
#error "rt_arm.c is the armv7 (thumbv7-windows) division runtime"
#endif

/* Restoring binary long division: one quotient bit per step, from the divisor's highest
 * useful shift down.  One routine for both widths: a loader divides rarely, so 32-bit
 * division taking the 64-bit loop costs nothing that matters. */
static UINT64 udivmod(UINT64 n, UINT64 d, UINT64 *rem) {
    if (d == 0)
        __builtin_trap();
    if (d > n) {
        *rem = n;
        return 0;
    }
    int shift = __builtin_clzll(d) - __builtin_clzll(n);
    UINT64 q = 0;
    d <<= shift; /* same top bit as n: cannot overflow */
    for (; shift >= 0; shift--) {
        q <<= 1;
        if (n >= d) {
            n -= d;
            q |= 1;
        }
        d >>= 1;
    }
    *rem = n;
    return q;
}

/* Called from __rt_udiv64 with its registers as they came (divisor in r0:r1, dividend in
 * r2:r3) and the remainder's slot on the stack. */
UINT64 cb_rt_udivmod64(UINT64 d, UINT64 n, UINT64 *rem);
UINT64 cb_rt_udivmod64(UINT64 d, UINT64 n, UINT64 *rem) {
    return udivmod(n, d, rem);
}

UINT64 __rt_udiv(UINT32 divisor, UINT32 dividend);
UINT64 __rt_udiv(UINT32 divisor, UINT32 dividend) {
    UINT64 r;
    UINT64 q = udivmod(dividend, divisor, &r);
    return r << 32 | q;
}

/* r0:r1 divisor, r2:r3 dividend -> r0:r1 quotient, r2:r3 remainder.  Frame: r4 + lr pushed
 * (8 bytes) and 16 more, so sp stays 8-byte aligned at the call; [sp] is the fifth argument
 * (the remainder pointer), [sp + 8] the remainder. */
__attribute__((naked)) void __rt_udiv64(void);
__attribute__((naked)) void __rt_udiv64(void) {
    __asm__ volatile("push {r4, lr}\n\t"
                     "sub sp, sp, #16\n\t"
                     "add r4, sp, #8\n\t"
                     "str r4, [sp]\n\t"
                     "bl cb_rt_udivmod64\n\t"
                     "ldrd r2, r3, [sp, #8]\n\t"
                     "add sp, sp, #16\n\t"
                     "pop {r4, pc}\n\t");
}
