/*
 * dashboard.h - the dashboard page served at GET / (issue 8).
 *
 * server/dashboard/index.html is embedded into the binary at build time
 * (dashboard.c includes it with the assembler's .incbin; the Makefile makes
 * dashboard.o depend on it), so paramd serves it with no files to install
 * and no network: the page draws its plots itself on canvas elements from
 * the JSON endpoints (/v1/models, /v1/models/{model}/history).
 */
#ifndef PARAMD_SERVER_DASHBOARD_H
#define PARAMD_SERVER_DASHBOARD_H

#include <stddef.h>

/* The page's bytes (not NUL-terminated: use the length). */
extern const char paramd__dashboard_html[];

size_t paramd__dashboard_html_length(void);

#endif
