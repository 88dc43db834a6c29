/*
 * json_schedule.c - learning-rate schedules to and from JSON (see schedule.h).
 *
 * A schedule is an object of torch's keyword arguments plus its class name:
 *
 *     {"name": "CosineAnnealingLR", "T_max": 1000, "eta_min": 1e-5}
 *     {"name": "SequentialLR", "milestones": [100],
 *      "schedulers": [{"name": "LinearLR", "start_factor": 0.01, "total_iters": 100},
 *                     {"name": "CosineAnnealingLR", "T_max": 900}]}
 *
 * Parsing checks the JSON types and names the offending field in every error
 * ("schedule.schedulers[1].T_max: must be an integer"); ranges and
 * cross-field rules are the schedule table's (schedule.c).
 */
#include "schedule.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * Parsing
 * ------------------------------------------------------------------------- */

/* Lists the parameter names of `type`, for "unknown field" errors. */
static void list_parameters(const paramd__schedule_type *type, char *buffer, size_t size)
{
    buffer[0] = '\0';
    for (int i = 0; i < type->parameter_count; i++) {
        strncat(buffer, i ? ", " : "", size - strlen(buffer) - 1);
        strncat(buffer, type->parameters[i].spec.name, size - strlen(buffer) - 1);
    }
}

/* Lists a choice parameter's strings as "\"min\", \"max\"". */
static void list_choices(const paramd__schedule_parameter *parameter, char *buffer, size_t size)
{
    buffer[0] = '\0';
    for (int i = 0; parameter->choices[i] != NULL; i++) {
        strncat(buffer, i ? ", \"" : "\"", size - strlen(buffer) - 1);
        strncat(buffer, parameter->choices[i], size - strlen(buffer) - 1);
        strncat(buffer, "\"", size - strlen(buffer) - 1);
    }
}

static int parse_node(const json_t *object, const char *field, bool is_child,
                      paramd__schedule_config *config, paramd__schedule_node *node,
                      paramd__error *error);

static int parse_milestones(const json_t *value, const char *field,
                            const paramd__schedule_parameter *parameter,
                            paramd__schedule_node *node, paramd__error *error)
{
    if (!json_is_array(value))
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s: must be an array of integers", field);
    size_t count = json_array_size(value);
    if (count > PARAMD__MAX_SCHEDULE_MILESTONES)
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s: at most %d milestones, got %zu", field,
                                 PARAMD__MAX_SCHEDULE_MILESTONES, count);
    int64_t milestones[PARAMD__MAX_SCHEDULE_MILESTONES];
    for (size_t i = 0; i < count; i++) {
        const json_t *element = json_array_get(value, i);
        if (!json_is_integer(element))
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s[%zu]: must be an integer", field, i);
        milestones[i] = (int64_t)json_integer_value(element);
    }
    return paramd__schedule_node_set_milestones(node, parameter, milestones, (int)count, field,
                                                error);
}

static int parse_schedulers(const json_t *value, const char *field,
                            const paramd__schedule_parameter *parameter,
                            paramd__schedule_config *config, paramd__schedule_node *node,
                            paramd__error *error)
{
    if (!json_is_array(value))
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s: must be an array of schedules, e.g. [{\"name\": "
                                 "\"LinearLR\"}, {\"name\": \"CosineAnnealingLR\", \"T_max\": "
                                 "100}]",
                                 field);
    size_t count = json_array_size(value);
    if (count < 1 || count > PARAMD__MAX_SCHEDULE_CHILDREN)
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s: must list 1 to %d schedules, got %zu", field,
                                 PARAMD__MAX_SCHEDULE_CHILDREN, count);
    for (size_t i = 0; i < count; i++) {
        char child_field[224];
        snprintf(child_field, sizeof child_field, "%.200s[%zu]", field, i);
        int result = parse_node(json_array_get(value, i), child_field, true, config,
                                &config->children[i], error);
        if (result != PARAMD_OK)
            return result;
    }
    config->child_count = (int)count;
    node->values[parameter->spec.slot] = (double)count;
    return PARAMD_OK;
}

/* Parses one member of a schedule object. */
static int parse_member(const json_t *value, const char *field,
                        const paramd__schedule_parameter *parameter,
                        paramd__schedule_config *config, paramd__schedule_node *node,
                        paramd__error *error)
{
    double number = NAN;
    switch (parameter->kind) {
    case PARAMD__SCHEDULE_PARAMETER_MILESTONES:
        return parse_milestones(value, field, parameter, node, error);
    case PARAMD__SCHEDULE_PARAMETER_SCHEDULERS:
        return parse_schedulers(value, field, parameter, config, node, error);
    case PARAMD__SCHEDULE_PARAMETER_CHOICE: {
        int index = json_is_string(value)
                        ? paramd__schedule_find_choice(parameter, json_string_value(value))
                        : -1;
        if (index < 0) {
            char choices[128];
            list_choices(parameter, choices, sizeof choices);
            if (json_is_string(value))
                return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                         "%s: must be one of %s, got \"%.100s\"", field,
                                         choices, json_string_value(value));
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s: must be one of the strings %s", field, choices);
        }
        number = index;
        break;
    }
    case PARAMD__SCHEDULE_PARAMETER_INTEGER:
        if (json_is_null(value) && parameter->nullable)
            break;
        if (!json_is_integer(value))
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER, "%s: must be an integer%s",
                                     field, parameter->nullable ? " or null" : "");
        number = (double)json_integer_value(value);
        break;
    case PARAMD__SCHEDULE_PARAMETER_VALUE:
        if (parameter->spec.kind == PARAMD__HYPERPARAMETER_BOOLEAN) {
            if (!json_is_boolean(value))
                return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                         "%s: must be true or false", field);
            number = json_is_true(value) ? 1.0 : 0.0;
        } else {
            if (!json_is_number(value))
                return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                         "%s: must be a number", field);
            number = json_number_value(value);
        }
        break;
    }
    return paramd__schedule_node_set(node, parameter, number, field, error);
}

static int parse_node(const json_t *object, const char *field, bool is_child,
                      paramd__schedule_config *config, paramd__schedule_node *node,
                      paramd__error *error)
{
    if (!json_is_object(object))
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s: must be an object, e.g. {\"name\": \"StepLR\", "
                                 "\"step_size\": 30}",
                                 field);
    const json_t *name = json_object_get(object, "name");
    if (!json_is_string(name))
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s.name: required string, e.g. \"CosineAnnealingLR\"", field);
    const paramd__schedule_type *type = paramd__schedule_find(json_string_value(name));
    if (type == NULL) {
        char known[320];
        paramd__schedule_list_names(known, sizeof known);
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s.name: unknown schedule \"%.100s\" (known: %s)", field,
                                 json_string_value(name), known);
    }
    if (is_child && type->composition != PARAMD__SCHEDULE_LEAF)
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s.name: %s cannot be nested in another schedule (paramd "
                                 "keeps one level of child schedules)",
                                 field, type->name);
    if (is_child && type->needs_loss)
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "%s.name: %s cannot be a child schedule (torch steps children "
                                 "without the loss it needs)",
                                 field, type->name);
    paramd__schedule_node_init(node, type);

    const char *key;
    json_t *value;
    json_object_foreach((json_t *)object, key, value) {
        if (strcmp(key, "name") == 0)
            continue;
        char member_field[200];
        snprintf(member_field, sizeof member_field, "%s.%.100s", field, key);
        const paramd__schedule_parameter *parameter =
            paramd__schedule_find_parameter(type, key);
        if (parameter == NULL) {
            char known[256];
            list_parameters(type, known, sizeof known);
            return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                     "%s: %s has no parameter named \"%.100s\" (known: %s)",
                                     member_field, type->name, key, known);
        }
        int result = parse_member(value, member_field, parameter, config, node, error);
        if (result != PARAMD_OK)
            return result;
    }
    return PARAMD_OK;
}

int paramd__json_parse_schedule(const json_t *object, paramd__schedule_config *config,
                                paramd__error *error)
{
    memset(config, 0, sizeof *config);
    if (object == NULL)
        return paramd__error_set(error, PARAMD_E_BAD_HYPERPARAMETER,
                                 "schedule: required, e.g. {\"name\": \"CosineAnnealingLR\", "
                                 "\"T_max\": 1000}");
    int result = parse_node(object, "schedule", false, config, &config->schedule, error);
    if (result != PARAMD_OK)
        return result;
    return paramd__schedule_config_validate(config, error);
}

/* ---------------------------------------------------------------------------
 * Describing
 * ------------------------------------------------------------------------- */

static json_t *describe_node(const paramd__schedule_config *config,
                             const paramd__schedule_node *node)
{
    const paramd__schedule_type *type = node->type;
    json_t *object = json_pack("{s:s}", "name", type->name);
    for (int i = 0; object != NULL && i < type->parameter_count; i++) {
        const paramd__schedule_parameter *parameter = &type->parameters[i];
        if (parameter->spec.flags & PARAMD__HYPERPARAMETER_NO_EFFECT)
            continue;
        double number = node->values[parameter->spec.slot];
        json_t *value = NULL;
        switch (parameter->kind) {
        case PARAMD__SCHEDULE_PARAMETER_VALUE:
            value = parameter->spec.kind == PARAMD__HYPERPARAMETER_BOOLEAN
                        ? json_boolean(number != 0)
                        : json_real(number);
            break;
        case PARAMD__SCHEDULE_PARAMETER_INTEGER:
            value = isnan(number) ? json_null() : json_integer((json_int_t)number);
            break;
        case PARAMD__SCHEDULE_PARAMETER_CHOICE:
            value = json_string(parameter->choices[(int)number]);
            break;
        case PARAMD__SCHEDULE_PARAMETER_MILESTONES:
            value = json_array();
            for (int m = 0; value != NULL && m < node->milestone_count; m++)
                if (json_array_append_new(value, json_integer((json_int_t)node->milestones[m])) !=
                    0) {
                    json_decref(value);
                    value = NULL;
                }
            break;
        case PARAMD__SCHEDULE_PARAMETER_SCHEDULERS:
            value = json_array();
            for (int c = 0; value != NULL && c < config->child_count; c++)
                if (json_array_append_new(value, describe_node(config, &config->children[c])) !=
                    0) {
                    json_decref(value);
                    value = NULL;
                }
            break;
        }
        if (value == NULL || json_object_set_new(object, parameter->spec.name, value) != 0) {
            json_decref(object);
            object = NULL;
        }
    }
    return object;
}

json_t *paramd__json_schedule(const paramd__schedule_config *config)
{
    return describe_node(config, &config->schedule);
}
