/* The query capture's eval callback in C (engine/queries.py explains what it captures).

   ggml calls the eval callback for every graph node (~970 per token on SmolLM2). From
   Python each call is a ctypes transition that takes the GIL; here it is a flag test while
   unarmed and a name compare while armed. The ggml functions it needs come in as pointers
   from the library llama-cpp-python loaded, so this file links against nothing.

   Per layer it keeps the newest `keep` query rows of the last batch that computed that
   layer's `Qcur` after RoPE; Python takes them after each decode (qc_rows says how many). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define QC_MAX_LAYERS 512

struct qc_tensor_head { /* the first fields of struct ggml_tensor (ggml.h) */
    int type;
    void *buffer;
    int64_t ne[4];
    size_t nb[4];
};

typedef const char *(*qc_name_fn)(const void *tensor);
typedef size_t (*qc_nbytes_fn)(const void *tensor);
typedef void (*qc_get_fn)(const void *tensor, void *data, size_t offset, size_t size);

typedef struct {
    qc_name_fn get_name;
    qc_name_fn op_desc;
    qc_nbytes_fn nbytes;
    qc_get_fn tensor_get;
    int armed;
    int keep;
    int rows[QC_MAX_LAYERS];
    int n_head[QC_MAX_LAYERS];
    int dim[QC_MAX_LAYERS];
    size_t cap[QC_MAX_LAYERS];
    float *buf[QC_MAX_LAYERS];
} qc_state;

size_t qc_state_size(void) { return sizeof(qc_state); }

int qc_max_layers(void) { return QC_MAX_LAYERS; }

void qc_reset(qc_state *s) {
    memset(s->rows, 0, sizeof s->rows);
}

void qc_free(qc_state *s) {
    for (int i = 0; i < QC_MAX_LAYERS; i++) {
        free(s->buf[i]);
        s->buf[i] = NULL;
        s->cap[i] = 0;
    }
}

bool qc_callback(void *tensor, bool ask, void *user) {
    qc_state *s = (qc_state *)user;
    if (!s->armed) return false;
    const char *name = s->get_name(tensor);
    if (name == NULL || strncmp(name, "Qcur-", 5) != 0) return false;
    if (ask) return strcmp(s->op_desc(tensor), "ROPE") == 0;
    char *end = NULL;
    long layer = strtol(name + 5, &end, 10);
    if (end == name + 5 || *end != '\0' || layer < 0 || layer >= QC_MAX_LAYERS) return true;
    const struct qc_tensor_head *head = (const struct qc_tensor_head *)tensor;
    if (head->type != 0) return true; /* queries are float32 */
    int64_t d = head->ne[0], n_head = head->ne[1], n_tok = head->ne[2];
    if ((size_t)(d * n_head * n_tok) * 4 != s->nbytes(tensor)) return true;
    int64_t take = n_tok < s->keep ? n_tok : s->keep;
    size_t row = (size_t)(d * n_head) * 4;
    size_t need = (size_t)take * row;
    if (need > s->cap[layer]) {
        float *grown = (float *)realloc(s->buf[layer], need);
        if (grown == NULL) return true;
        s->buf[layer] = grown;
        s->cap[layer] = need;
    }
    s->tensor_get(tensor, s->buf[layer], (size_t)(n_tok - take) * row, need);
    s->rows[layer] = (int)take;
    s->n_head[layer] = (int)n_head;
    s->dim[layer] = (int)d;
    return true;
}
