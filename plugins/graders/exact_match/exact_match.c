/* exact_match — 1 when the model's answer equals the reference after normalisation,
 * else 0. Normalisation: trim, collapse runs of whitespace to one space, and (unless
 * case_sensitive) lowercase ASCII. Written in C against fthost.h alone, as any grader
 * can be: no LibTorch, no C++. */
#include <fthost/fthost.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct exact_match {
    int case_sensitive;
} exact_match;

static const ft_option kOptions[] = {
    {sizeof(ft_option), "case_sensitive", FT_OPT_BOOL, 0, "false", "compare letters' case too"},
};

/* Writes the normalised form of s into a new buffer (caller frees). */
static char* normalise(const char* s, int case_sensitive) {
    size_t n = strlen(s), j = 0;
    char* out = (char*)malloc(n + 1);
    int pending_space = 0;
    if (!out) return NULL;
    for (size_t i = 0; i < n; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (isspace(c)) {
            pending_space = j > 0;
            continue;
        }
        if (pending_space) out[j++] = ' ';
        pending_space = 0;
        out[j++] = case_sensitive ? (char)c : (char)tolower(c);
    }
    out[j] = '\0';
    return out;
}

static ft_status em_create(const ft_host_api* host, const ft_config* cfg, ft_grader** out, ft_error* err) {
    exact_match* g = (exact_match*)calloc(1, sizeof(exact_match));
    if (!g) {
        snprintf(err->message, sizeof err->message, "out of memory");
        return FT_ERR_OUT_OF_MEMORY;
    }
    g->case_sensitive = host->config_bool(cfg, "case_sensitive");
    *out = (ft_grader*)g;
    return FT_OK;
}

static void em_destroy(ft_grader* g) { free(g); }

static ft_status em_grade(ft_grader* grader, const ft_grade_item* items, uint32_t count, ft_grade_result* results,
                          ft_error* err) {
    const exact_match* g = (const exact_match*)grader;
    for (uint32_t i = 0; i < count; ++i) {
        results[i].reason[0] = '\0';
        if (!items[i].reference) { /* nothing to compare with: not applicable */
            results[i].score = NAN;
            continue;
        }
        char* a = normalise(items[i].completion ? items[i].completion : "", g->case_sensitive);
        char* b = normalise(items[i].reference, g->case_sensitive);
        if (!a || !b) {
            free(a);
            free(b);
            snprintf(err->message, sizeof err->message, "out of memory");
            return FT_ERR_OUT_OF_MEMORY;
        }
        results[i].score = strcmp(a, b) == 0 ? 1.0 : 0.0;
        free(a);
        free(b);
    }
    return FT_OK;
}

static const ft_grader_vtable kVtable = {sizeof(ft_grader_vtable), em_create, em_destroy, em_grade};

static const ft_plugin_desc kDesc = {
    sizeof(ft_plugin_desc), FTHOST_ABI_MAJOR, FTHOST_ABI_MINOR, FT_KIND_GRADER, FT_PLUGIN_THREAD_SAFE,
    "exact_match", "0.1.0", "normalised string equality with the reference answer", NULL,
    kOptions, sizeof kOptions / sizeof kOptions[0], &kVtable, NULL};

FTHOST_EXPORT const ft_plugin_desc* const* fthost_plugins_v1(uint32_t* count) {
    static const ft_plugin_desc* const list[] = {&kDesc};
    *count = 1;
    return list;
}
