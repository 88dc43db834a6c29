/* loss_scale.c - see loss_scale.h. */
#include "loss_scale.h"

#include "tensor.h"

#include <float.h>
#include <math.h>
#include <string.h>

void paramd__loss_scale_config_init(paramd__loss_scale_config *config)
{
    config->init_scale = PARAMD__LOSS_SCALE_DEFAULT_INIT_SCALE;
    config->growth_factor = PARAMD__LOSS_SCALE_DEFAULT_GROWTH_FACTOR;
    config->backoff_factor = PARAMD__LOSS_SCALE_DEFAULT_BACKOFF_FACTOR;
    config->growth_interval = PARAMD__LOSS_SCALE_DEFAULT_GROWTH_INTERVAL;
}

int paramd__loss_scale_config_validate(const paramd__loss_scale_config *config,
                                       paramd__error *error)
{
    /* torch asserts growth_factor > 1 and backoff_factor < 1; paramd also
     * refuses what would make the scale zero, negative or infinite. */
    if (!(config->init_scale > 0 && config->init_scale <= FLT_MAX))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "loss_scale.init_scale: must be > 0 and at most %.9g (float32), "
                                 "got %.17g",
                                 (double)FLT_MAX, config->init_scale);
    if (!(config->growth_factor > 1 && isfinite(config->growth_factor)))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "loss_scale.growth_factor: must be > 1 and finite, got %.17g",
                                 config->growth_factor);
    if (!(config->backoff_factor > 0 && config->backoff_factor < 1))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "loss_scale.backoff_factor: must be in (0, 1), got %.17g",
                                 config->backoff_factor);
    if (config->growth_interval < 1 || config->growth_interval > INT32_MAX)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "loss_scale.growth_interval: must be an integer in [1, %d], got "
                                 "%lld",
                                 INT32_MAX, (long long)config->growth_interval);
    return PARAMD_OK;
}

void paramd__loss_scale_init(paramd__loss_scale *state, const paramd__loss_scale_config *config)
{
    state->scale = (float)config->init_scale;
    state->growth_tracker = 0;
}

float paramd__loss_scale_inverse(float scale)
{
    return (float)(1.0 / (double)scale);
}

void paramd__loss_scale_update(paramd__loss_scale *state, const paramd__loss_scale_config *config,
                               bool found_inf)
{
    /* torch's _amp_update_scale_ kernel: the float32 scale times a double
     * factor, computed in double and stored as float32. */
    if (found_inf) {
        state->scale = (float)((double)state->scale * config->backoff_factor);
        state->growth_tracker = 0;
        return;
    }
    int64_t successful = (int64_t)state->growth_tracker + 1;
    if (successful == config->growth_interval) {
        float grown = (float)((double)state->scale * config->growth_factor);
        if (isfinite(grown))
            state->scale = grown;
        state->growth_tracker = 0;
    } else {
        state->growth_tracker = (int32_t)successful;
    }
}

size_t paramd__loss_scale_unscale(const float *in, float *out, size_t count, float inv_scale)
{
    /* Blocks of 4096: a branch-free multiply-and-test that gcc vectorises,
     * and a search only in a block that holds a non-finite value. */
    const size_t block = 4096;
    for (size_t begin = 0; begin < count; begin += block) {
        size_t end = begin + block < count ? begin + block : count;
        unsigned bad = 0;
        for (size_t i = begin; i < end; i++) {
            float value = in[i] * inv_scale;
            uint32_t bits;
            memcpy(&bits, &value, sizeof bits);
            bad |= (bits & 0x7f800000u) == 0x7f800000u;
            out[i] = value;
        }
        if (bad)
            return begin + paramd__find_non_finite(out + begin, end - begin);
    }
    return count;
}
