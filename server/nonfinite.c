/* nonfinite.c - see nonfinite.h. */
#include "nonfinite.h"

#include <stdint.h>
#include <string.h>

static const char *const policy_names[] = {"error", "skip", "zero"};

const char *paramd__nonfinite_policy_name(paramd__nonfinite_policy policy)
{
    return (unsigned)policy < sizeof policy_names / sizeof policy_names[0] ? policy_names[policy]
                                                                           : "error";
}

int paramd__nonfinite_policy_find(const char *name)
{
    for (size_t i = 0; i < sizeof policy_names / sizeof policy_names[0]; i++)
        if (strcmp(policy_names[i], name) == 0)
            return (int)i;
    return -1;
}

size_t paramd__nonfinite_zero(const float *in, float *out, size_t count)
{
    /* Branch-free on the exponent bits, so gcc vectorises it. */
    size_t zeroed = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, &in[i], sizeof bits);
        int bad = (bits & 0x7f800000u) == 0x7f800000u;
        zeroed += (size_t)bad;
        out[i] = bad ? 0.0f : in[i];
    }
    return zeroed;
}
