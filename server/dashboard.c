/* dashboard.c - see dashboard.h.  The path is relative to the repository
 * root, where make runs the compiler. */
#include "dashboard.h"

__asm__(".section .rodata\n"
        ".global paramd__dashboard_html\n"
        ".type paramd__dashboard_html, @object\n"
        ".balign 16\n"
        "paramd__dashboard_html:\n"
        ".incbin \"server/dashboard/index.html\"\n"
        ".global paramd__dashboard_html_end\n"
        "paramd__dashboard_html_end:\n"
        ".byte 0\n"
        ".previous\n");

extern const char paramd__dashboard_html_end[];

size_t paramd__dashboard_html_length(void)
{
    return (size_t)(paramd__dashboard_html_end - paramd__dashboard_html);
}
