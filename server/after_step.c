/* after_step.c - see after_step.h. */
#include "after_step.h"

#include "initializer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int paramd__lookahead_config_validate(const paramd__lookahead_config *config,
                                      paramd__error *error)
{
    if (!config->enabled)
        return PARAMD_OK;
    if (config->k < 1 || config->k > 1000000)
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "optimizer.k: Lookahead's steps between synchronisations, an "
                                 "integer from 1 to 1000000, got %lld",
                                 (long long)config->k);
    if (!(config->alpha > 0 && config->alpha <= 1))
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "optimizer.alpha: Lookahead's step towards the fast weights, in "
                                 "(0, 1], got %.17g",
                                 config->alpha);
    return PARAMD_OK;
}

int paramd__averaging_config_validate(const paramd__averaging_config *config,
                                      paramd__error *error)
{
    if (config->ema && !(config->ema_decay >= 0 && config->ema_decay < 1))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "averaging.ema.decay: must be in [0, 1), got %.17g",
                                 config->ema_decay);
    if (config->swa && config->swa_start < 1)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "averaging.swa.start: the first step averaged, an integer >= 1");
    if (config->swa && config->swa_frequency < 1)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "averaging.swa.frequency: steps between averaged steps, an "
                                 "integer >= 1");
    return PARAMD_OK;
}

void paramd__lookahead_apply(const paramd__lookahead_config *config, uint64_t step,
                             float *weights, float *slow, size_t count)
{
    if (!config->enabled || step % (uint64_t)config->k != 0)
        return;
    /* torch-optimizer's slow.add_(fast - slow, alpha=alpha): torch's CPU
     * add with alpha is one fused multiply-add in float32. */
    float alpha = (float)config->alpha;
    for (size_t i = 0; i < count; i++) {
        float moved = fmaf(alpha, weights[i] - slow[i], slow[i]);
        slow[i] = moved;
        weights[i] = moved;
    }
}

/* ---------------------------------------------------------------------------
 * Constraints
 * ------------------------------------------------------------------------- */

const char *paramd__constraint_name(paramd__constraint_kind kind)
{
    switch (kind) {
    case PARAMD__CONSTRAINT_NONNEG:
        return "nonneg";
    case PARAMD__CONSTRAINT_MAX_NORM:
        return "max_norm";
    case PARAMD__CONSTRAINT_ORTHOGONAL:
        return "orthogonal";
    default:
        return "none";
    }
}

int paramd__constraint_validate(const paramd__constraint *constraint, int dimension_count,
                                const char *field, paramd__error *error)
{
    if (constraint->kind == PARAMD__CONSTRAINT_MAX_NORM && !(constraint->max_norm > 0) )
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s.max_norm: must be a number > 0", field);
    if (constraint->kind == PARAMD__CONSTRAINT_MAX_NORM && !isfinite(constraint->max_norm))
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s.max_norm: must be finite", field);
    if ((constraint->kind == PARAMD__CONSTRAINT_ORTHOGONAL ||
         constraint->kind == PARAMD__CONSTRAINT_MAX_NORM) &&
        dimension_count < 2)
        return paramd__error_set(error, PARAMD_E_BAD_REQUEST,
                                 "%s: %s needs a tensor of at least 2 dimensions (rows along "
                                 "the first, as torch.renorm and a matrix of the first "
                                 "dimension by the rest), got %d",
                                 field, paramd__constraint_name(constraint->kind),
                                 dimension_count);
    return PARAMD_OK;
}

/* torch.renorm(w, 2, 0, max_norm): each row's norm, the factor max_norm /
 * (norm + 1e-7) rounded to float32, the row scaled by it. */
static void renorm_rows(float *weights, size_t count, size_t rows, double max_norm)
{
    size_t length = rows ? count / rows : 0;
    for (size_t r = 0; r < rows; r++) {
        float *row = weights + r * length;
        /* torch works in float32 here (renorm's accumulation type is the
         * CUDA one): the sum of squares, the norm, the comparison, and
         * max_norm / (norm + 1e-7).  (torch's sum is vectorised; for rows
         * longer than a vector its order, and so the last bit, can differ.) */
        float squares = 0;
        for (size_t i = 0; i < length; i++)
            squares += row[i] * row[i];
        float norm = sqrtf(squares), limit = (float)max_norm;
        if (!(norm > limit))
            continue;
        float factor = limit / (norm + 1e-7f);
        for (size_t i = 0; i < length; i++)
            row[i] = row[i] * factor;
    }
}

int paramd__constraint_apply(const paramd__constraint *constraint, float *weights, size_t count,
                             int dimension_count, const int64_t *shape)
{
    switch (constraint->kind) {
    case PARAMD__CONSTRAINT_NONNEG:
        for (size_t i = 0; i < count; i++)
            weights[i] = weights[i] > 0.0f ? weights[i] : 0.0f;
        return PARAMD_OK;
    case PARAMD__CONSTRAINT_MAX_NORM:
        (void)dimension_count;
        renorm_rows(weights, count, (size_t)shape[0], constraint->max_norm);
        return PARAMD_OK;
    case PARAMD__CONSTRAINT_ORTHOGONAL: {
        size_t rows = (size_t)shape[0];
        if (count == 0 || rows == 0)
            return PARAMD_OK;
        double *matrix = malloc(count * sizeof *matrix);
        float *retracted = malloc(count * sizeof *retracted);
        int result = PARAMD_E_NO_MEMORY;
        if (matrix && retracted) {
            for (size_t i = 0; i < count; i++)
                matrix[i] = weights[i];
            result = paramd__orthogonalize(matrix, rows, count / rows, 1.0, retracted);
            if (result == PARAMD_OK)
                memcpy(weights, retracted, count * sizeof *weights);
        }
        free(matrix);
        free(retracted);
        return result;
    }
    default:
        return PARAMD_OK;
    }
}

/* ---------------------------------------------------------------------------
 * Averaging
 * ------------------------------------------------------------------------- */

void paramd__averaging_apply(const paramd__averaging_config *config, uint64_t step,
                             const float *weights, float *ema, uint64_t *ema_count, float *swa,
                             uint64_t *swa_count, size_t count)
{
    if (config->ema && ema) {
        /* AveragedModel with avg_fn = decay * avg + (1 - decay) * w: the
         * first update copies the weights; float32 products of the scalars
         * rounded to float32, as torch's tensor-scalar arithmetic. */
        if ((*ema_count)++ == 0) {
            memcpy(ema, weights, count * sizeof *ema);
        } else {
            float keep = (float)config->ema_decay, take = (float)(1.0 - config->ema_decay);
            for (size_t i = 0; i < count; i++)
                ema[i] = keep * ema[i] + take * weights[i];
        }
    }
    if (config->swa && swa && step >= (uint64_t)config->swa_start &&
        (step - (uint64_t)config->swa_start) % (uint64_t)config->swa_frequency == 0) {
        /* AveragedModel's default: avg + (w - avg) / (n + 1). */
        if (*swa_count == 0) {
            memcpy(swa, weights, count * sizeof *swa);
        } else {
            float divisor = (float)(*swa_count + 1);
            for (size_t i = 0; i < count; i++)
                swa[i] = swa[i] + (weights[i] - swa[i]) / divisor;
        }
        (*swa_count)++;
    }
}
