/* The inner loop of consultant/match/search.py: score the candidate titles of one query.

   search.search() used to do this with numpy (about forty array operations per
   search, each with its fixed cost) or, for a few candidates, in a Python loop
   over every title's tokens. This is that loop, in C: for each candidate
   title, in candidate order, it walks the title's tokens once and adds up
   what the query's words explain, exactly as the loop did, operation for
   operation in double precision (built with -ffp-contract=off, so that no
   multiply-add is fused and every sum rounds as Python's does). It then keeps
   each target's best name (the highest score, the first candidate on a tie)
   and says which targets have several clean names explaining more query words
   together than their best name alone. The rest (widening those targets,
   ranking, choosing 7th characters) stays in Python, which reads the results
   through the buffers returned here. tests/test_match_search.py compares
   every hit, bit for bit, with the reference loop.

   Every index read is checked against its array's length: a damaged index
   raises ValueError, never reads outside memory. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define NEG_MARK 0x40000000  /* in the token table: the token is negated */
#define WORD_MASK 0x3fffffff /* in the token table: query word number + 1 */

typedef struct {
    Py_buffer view;
    int held;
} Buffer;

static int take(PyObject *obj, Buffer *b, Py_ssize_t itemsize, const char *name)
{
    if (PyObject_GetBuffer(obj, &b->view, PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    b->held = 1;
    if (b->view.len % itemsize != 0) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes is not a whole number of %zd-byte items", name,
                     b->view.len, itemsize);
        return -1;
    }
    return 0;
}

static void release(Buffer *b)
{
    if (b->held) {
        PyBuffer_Release(&b->view);
        b->held = 0;
    }
}

/* Slots of targets in the order their first name is met: an open-addressing table. */
typedef struct {
    int32_t *keys;
    int32_t *slots;
    Py_ssize_t mask;
} TargetTable;

static int table_init(TargetTable *t, Py_ssize_t n)
{
    Py_ssize_t size = 16;
    while (size < 2 * n)
        size <<= 1;
    t->keys = PyMem_Malloc(sizeof(int32_t) * size);
    t->slots = PyMem_Malloc(sizeof(int32_t) * size);
    if (!t->keys || !t->slots)
        return -1;
    for (Py_ssize_t i = 0; i < size; i++)
        t->slots[i] = -1;
    t->mask = size - 1;
    return 0;
}

static int32_t *table_slot(TargetTable *t, int32_t key)
{
    Py_ssize_t i = ((uint32_t)key * 2654435761u) & t->mask;
    while (t->slots[i] >= 0 && t->keys[i] != key)
        i = (i + 1) & t->mask;
    t->keys[i] = key;
    return &t->slots[i];
}

static PyObject *new_bytes(Py_ssize_t size, char **data)
{
    PyObject *b = PyBytes_FromStringAndSize(NULL, size > 0 ? size : 0);
    if (b)
        *data = PyBytes_AS_STRING(b);
    return b;
}

PyDoc_STRVAR(score_doc,
"score(tokens, roles, start, cost, alias, target, idf, candidates, weights, negated, without,\n"
"      q_total, ancestor, without_role, role_cost, ancestor_match, contradicted, negated_penalty)\n"
"\n"
"Score each candidate title (int64 document numbers) for the query's `weights`\n"
"(dict: token id -> weight, in query order) and `negated` token ids. Returns\n"
"(n_targets, target, best, score, eligible, matched_q, dcov, credit, clean, slot,\n"
"hit_start, hits): per target slot (in the order first met) its target, best\n"
"candidate and best score (bytes: int32, int32, float64); the slots whose clean\n"
"names explain more words together than the best name does (a list); per\n"
"candidate its explained weight, title coverage, credit (float64), whether it is\n"
"clean (uint8), its target slot (int32), and its matched token ids\n"
"hits[hit_start[j]:hit_start[j + 1]] (int32).");

static PyObject *score(PyObject *self, PyObject *args)
{
    PyObject *tokens_o, *roles_o, *start_o, *cost_o, *alias_o, *target_o, *idf_o, *cand_o, *weights, *negated;
    PyObject *role_cost_o;
    long without;
    int ancestor_role, without_role;
    double q_total, ancestor_match, contradicted, negated_penalty;
    if (!PyArg_ParseTuple(args, "OOOOOOOOO!OldiiOddd", &tokens_o, &roles_o, &start_o, &cost_o, &alias_o,
                          &target_o, &idf_o, &cand_o, &PyDict_Type, &weights, &negated, &without, &q_total,
                          &ancestor_role, &without_role, &role_cost_o, &ancestor_match, &contradicted,
                          &negated_penalty))
        return NULL;

    Buffer tokens_b = {0}, roles_b = {0}, start_b = {0}, cost_b = {0}, alias_b = {0}, target_b = {0};
    Buffer idf_b = {0}, cand_b = {0}, role_cost_b = {0};
    int32_t *code = NULL;
    double *qw = NULL;
    uint64_t *words_seen = NULL;
    TargetTable table = {NULL, NULL, 0};
    PyObject *result = NULL;
    PyObject *o_target = NULL, *o_best = NULL, *o_score = NULL, *o_matched = NULL, *o_dcov = NULL;
    PyObject *o_credit = NULL, *o_clean = NULL, *o_slot = NULL, *o_hit_start = NULL, *o_hits = NULL;
    PyObject *eligible = NULL;

    if (take(tokens_o, &tokens_b, 4, "tokens") < 0 || take(roles_o, &roles_b, 1, "roles") < 0 ||
        take(start_o, &start_b, 4, "start") < 0 || take(cost_o, &cost_b, 8, "cost") < 0 ||
        take(alias_o, &alias_b, 1, "alias") < 0 || take(target_o, &target_b, 4, "target") < 0 ||
        take(idf_o, &idf_b, 8, "idf") < 0 || take(cand_o, &cand_b, 8, "candidates") < 0 ||
        take(role_cost_o, &role_cost_b, 8, "role_cost") < 0)
        goto done;

    const int32_t *tokens = tokens_b.view.buf;
    const uint8_t *roles = roles_b.view.buf;
    const uint32_t *start = start_b.view.buf;
    const double *cost = cost_b.view.buf;
    const uint8_t *alias = alias_b.view.buf;
    const int32_t *target = target_b.view.buf;
    const double *idf = idf_b.view.buf;
    const int64_t *cand = cand_b.view.buf;
    const double *role_cost = role_cost_b.view.buf;
    const Py_ssize_t n_tokens = tokens_b.view.len / 4, n_docs = target_b.view.len / 4;
    const Py_ssize_t vocab = idf_b.view.len / 8, n = cand_b.view.len / 8, n_roles = role_cost_b.view.len / 8;
    if (roles_b.view.len != n_tokens || start_b.view.len / 4 != n_docs + 1 || cost_b.view.len / 8 != n_docs ||
        alias_b.view.len != n_docs) {
        PyErr_SetString(PyExc_ValueError, "the document arrays disagree in length");
        goto done;
    }

    /* The token table: query word number + 1, and NEG_MARK for a negated token. */
    const Py_ssize_t n_q = PyDict_GET_SIZE(weights);
    code = PyMem_Calloc(vocab > 0 ? vocab : 1, sizeof(int32_t));
    qw = PyMem_Malloc(sizeof(double) * (n_q > 0 ? n_q : 1));
    if (!code || !qw) {
        PyErr_NoMemory();
        goto done;
    }
    {
        Py_ssize_t pos = 0, i = 0;
        PyObject *key, *value;
        while (PyDict_Next(weights, &pos, &key, &value)) {
            long t = PyLong_AsLong(key);
            double w = PyFloat_AsDouble(value);
            if (PyErr_Occurred())
                goto done;
            if (t < 0 || t >= vocab) {
                PyErr_SetString(PyExc_ValueError, "a query word outside the vocabulary");
                goto done;
            }
            qw[i] = w;
            code[t] = (int32_t)(i + 1);
            i++;
        }
    }
    {
        PyObject *it = PyObject_GetIter(negated), *item;
        if (!it)
            goto done;
        while ((item = PyIter_Next(it))) {
            long t = PyLong_AsLong(item);
            Py_DECREF(item);
            if (t == -1 && PyErr_Occurred())
                break;
            if (t >= 0 && t < vocab)
                code[t] |= NEG_MARK;
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            goto done;
    }

    /* Outputs. A candidate's hits are at most its title's length. */
    Py_ssize_t hit_room = 0;
    for (Py_ssize_t j = 0; j < n; j++) {
        int64_t d = cand[j];
        if (d < 0 || d >= n_docs || start[d] > start[d + 1] || start[d + 1] > (uint64_t)n_tokens) {
            PyErr_SetString(PyExc_ValueError, "a candidate outside the documents");
            goto done;
        }
        hit_room += start[d + 1] - start[d];
    }
    char *p_target, *p_best, *p_score, *p_matched, *p_dcov, *p_credit, *p_clean, *p_slot, *p_hit_start, *p_hits;
    if (!(o_target = new_bytes(4 * n, &p_target)) || !(o_best = new_bytes(4 * n, &p_best)) ||
        !(o_score = new_bytes(8 * n, &p_score)) || !(o_matched = new_bytes(8 * n, &p_matched)) ||
        !(o_dcov = new_bytes(8 * n, &p_dcov)) || !(o_credit = new_bytes(8 * n, &p_credit)) ||
        !(o_clean = new_bytes(n, &p_clean)) || !(o_slot = new_bytes(4 * n, &p_slot)) ||
        !(o_hit_start = new_bytes(4 * (n + 1), &p_hit_start)) || !(o_hits = new_bytes(4 * hit_room, &p_hits)))
        goto done;
    int32_t *s_target = (int32_t *)p_target, *s_best = (int32_t *)p_best, *j_slot = (int32_t *)p_slot;
    int32_t *hit_start = (int32_t *)p_hit_start, *hits = (int32_t *)p_hits;
    double *s_score = (double *)p_score, *j_matched = (double *)p_matched, *j_dcov = (double *)p_dcov;
    double *j_credit = (double *)p_credit;
    uint8_t *j_clean = (uint8_t *)p_clean;

    const Py_ssize_t words_per = (n_q + 63) / 64 > 0 ? (n_q + 63) / 64 : 1;
    words_seen = PyMem_Calloc((size_t)(n > 0 ? n : 1) * words_per, sizeof(uint64_t));
    if (!words_seen || table_init(&table, n) < 0) {
        PyErr_NoMemory();
        goto done;
    }

    Py_ssize_t n_slots = 0, n_hits = 0;
    for (Py_ssize_t j = 0; j < n; j++) {
        const int64_t d = cand[j];
        double matched_q = 0.0, matched_cost = 0.0, penalty = 1.0, credit = 0.0;
        hit_start[j] = (int32_t)n_hits;
        for (uint32_t k = start[d]; k < start[d + 1]; k++) {
            const int32_t t = tokens[k];
            const uint8_t role = roles[k];
            if (t < 0 || t >= vocab || role >= n_roles) {
                PyErr_SetString(PyExc_ValueError, "a title token outside the vocabulary");
                goto done;
            }
            const int32_t c = code[t];
            const int is_neg = (c & NEG_MARK) != 0;
            const int32_t qi = (c & WORD_MASK) - 1;
            if (qi >= 0) {
                if (role == without_role && !is_neg && t != without) {
                    penalty *= contradicted; /* "without proteinuria" for a text that states it */
                    continue;
                }
                const double w = qw[qi];
                matched_q += role == ancestor_role ? w * ancestor_match : w;
                matched_cost += idf[t] * role_cost[role];
                hits[n_hits++] = t;
                if (is_neg && role != without_role)
                    penalty *= negated_penalty;
            } else if (is_neg) {
                if (role == without_role) {
                    credit += 0.06;
                    matched_cost += idf[t] * role_cost[role];
                } else {
                    penalty *= negated_penalty;
                }
            }
        }
        const double qcov = matched_q / q_total;
        const double dcov = cost[d] > 0 ? matched_cost / cost[d] : 1.0;
        double s = qcov * (0.3 + 0.7 * dcov) * penalty + credit;
        if (alias[d])
            s *= 0.97;
        j_matched[j] = matched_q;
        j_dcov[j] = dcov;
        j_credit[j] = credit;
        const int clean = penalty == 1.0 && n_hits > hit_start[j];
        j_clean[j] = (uint8_t)clean;

        int32_t *slot = table_slot(&table, target[d]);
        if (*slot < 0) {
            *slot = (int32_t)n_slots;
            s_target[n_slots] = target[d];
            s_best[n_slots] = (int32_t)j;
            s_score[n_slots] = s;
            n_slots++;
        } else if (s > s_score[*slot]) {
            s_best[*slot] = (int32_t)j;
            s_score[*slot] = s;
        }
        j_slot[j] = *slot;
        if (clean) {
            uint64_t *seen = words_seen + (size_t)*slot * words_per;
            for (Py_ssize_t h = hit_start[j]; h < n_hits; h++) {
                const int32_t qi = (code[hits[h]] & WORD_MASK) - 1;
                seen[qi / 64] |= (uint64_t)1 << (qi % 64);
            }
        }
    }
    hit_start[n] = (int32_t)n_hits;

    /* Targets whose clean names explain more query words together than the best
       name's own hits number, while scoring above the best name's credit. */
    eligible = PyList_New(0);
    if (!eligible)
        goto done;
    for (Py_ssize_t i = 0; i < n_slots; i++) {
        const uint64_t *seen = words_seen + (size_t)i * words_per;
        Py_ssize_t together = 0;
        for (Py_ssize_t w = 0; w < words_per; w++)
            together += __builtin_popcountll(seen[w]);
        const int32_t j = s_best[i];
        if (together > hit_start[j + 1] - hit_start[j] && s_score[i] > j_credit[j]) {
            PyObject *number = PyLong_FromSsize_t(i);
            if (!number || PyList_Append(eligible, number) < 0) {
                Py_XDECREF(number);
                goto done;
            }
            Py_DECREF(number);
        }
    }
    if (_PyBytes_Resize(&o_hits, 4 * n_hits) < 0)
        goto done;
    result = Py_BuildValue("nOOOOOOOOOOO", n_slots, o_target, o_best, o_score, eligible, o_matched, o_dcov,
                           o_credit, o_clean, o_slot, o_hit_start, o_hits);

done:
    release(&tokens_b);
    release(&roles_b);
    release(&start_b);
    release(&cost_b);
    release(&alias_b);
    release(&target_b);
    release(&idf_b);
    release(&cand_b);
    release(&role_cost_b);
    PyMem_Free(code);
    PyMem_Free(qw);
    PyMem_Free(words_seen);
    PyMem_Free(table.keys);
    PyMem_Free(table.slots);
    Py_XDECREF(o_target);
    Py_XDECREF(o_best);
    Py_XDECREF(o_score);
    Py_XDECREF(o_matched);
    Py_XDECREF(o_dcov);
    Py_XDECREF(o_credit);
    Py_XDECREF(o_clean);
    Py_XDECREF(o_slot);
    Py_XDECREF(o_hit_start);
    Py_XDECREF(o_hits);
    Py_XDECREF(eligible);
    return result;
}

/* Documents per query word, summed in walking order: an insertion-ordered table. */
typedef struct {
    int64_t doc;
    double acc;
    double key;
    Py_ssize_t order;
} Reached;

static int by_key(const void *a, const void *b)
{
    const Reached *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order); /* stable: the first reached first */
}

PyDoc_STRVAR(candidates_doc,
"candidates(postings, weights, cost, floor, most) -> bytes (int64 document numbers)\n"
"\n"
"Walk the postings (int32 document numbers, one buffer per query word) in order,\n"
"adding each word's weight to every document it reaches (the first word once per\n"
"document, the others once per occurrence); keep the documents whose sum is at\n"
"least `floor` times the best, in the order first reached. Over `most` of them,\n"
"keep the `most` with the best estimated score (ties: first reached first).");

static PyObject *candidates(PyObject *self, PyObject *args)
{
    PyObject *postings, *weights, *cost_o;
    double floor_share;
    Py_ssize_t most;
    if (!PyArg_ParseTuple(args, "O!O!Odn", &PyList_Type, &postings, &PyList_Type, &weights, &cost_o, &floor_share,
                          &most))
        return NULL;
    const Py_ssize_t n_words = PyList_GET_SIZE(postings);
    if (PyList_GET_SIZE(weights) != n_words) {
        PyErr_SetString(PyExc_ValueError, "one weight per postings list");
        return NULL;
    }
    Buffer cost_b = {0};
    Buffer *lists = PyMem_Calloc(n_words > 0 ? n_words : 1, sizeof(Buffer));
    Reached *reached = NULL;
    int32_t *table = NULL;
    PyObject *result = NULL;
    if (!lists) {
        PyErr_NoMemory();
        goto done;
    }
    if (take(cost_o, &cost_b, 8, "cost") < 0)
        goto done;
    const double *cost = cost_b.view.buf;
    const Py_ssize_t n_docs = cost_b.view.len / 8;
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < n_words; i++) {
        if (take(PyList_GET_ITEM(postings, i), &lists[i], 4, "postings") < 0)
            goto done;
        total += lists[i].view.len / 4;
    }
    Py_ssize_t size = 16;
    while (size < 2 * total)
        size <<= 1;
    const Py_ssize_t mask = size - 1;
    table = PyMem_Malloc(sizeof(int32_t) * size);
    reached = PyMem_Malloc(sizeof(Reached) * (total > 0 ? total : 1));
    if (!table || !reached) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < size; i++)
        table[i] = -1;
    Py_ssize_t n = 0;
    double top = 0.0;
    for (Py_ssize_t i = 0; i < n_words; i++) {
        const double w = PyFloat_AsDouble(PyList_GET_ITEM(weights, i));
        if (w == -1.0 && PyErr_Occurred())
            goto done;
        const int32_t *docs = lists[i].view.buf;
        const Py_ssize_t len = lists[i].view.len / 4;
        for (Py_ssize_t k = 0; k < len; k++) {
            const int32_t d = docs[k];
            if (d < 0 || d >= n_docs) {
                PyErr_SetString(PyExc_ValueError, "a posting outside the documents");
                goto done;
            }
            Py_ssize_t h = ((uint32_t)d * 2654435761u) & mask;
            while (table[h] >= 0 && reached[table[h]].doc != d)
                h = (h + 1) & mask;
            if (table[h] < 0) {
                table[h] = (int32_t)n;
                reached[n].doc = d;
                reached[n].acc = 0.0 + w;
                reached[n].order = n;
                n++;
            } else if (i > 0) {
                reached[table[h]].acc += w; /* the first word counts once per document */
            }
        }
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (reached[i].acc > top || i == 0)
            top = reached[i].acc;
    const double floor = top * floor_share;
    Py_ssize_t kept = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (reached[i].acc >= floor)
            reached[kept++] = reached[i];
    if (kept > most) {
        /* the best estimated score first, so that a short title ("Unspecified glaucoma")
           is not crowded out by a hundred long ones sharing one more word */
        for (Py_ssize_t i = 0; i < kept; i++) {
            const double c = cost[reached[i].doc] == 0.0 ? 1.0 : cost[reached[i].doc];
            const double a = reached[i].acc, share = a / c;
            reached[i].key = -a * (0.3 + 0.7 * (share < 1.0 ? share : 1.0));
        }
        qsort(reached, kept, sizeof(Reached), by_key);
        kept = most > 0 ? most : 0;
    }
    char *out;
    result = new_bytes(8 * kept, &out);
    if (result)
        for (Py_ssize_t i = 0; i < kept; i++)
            ((int64_t *)out)[i] = reached[i].doc;

done:
    release(&cost_b);
    if (lists)
        for (Py_ssize_t i = 0; i < n_words; i++)
            release(&lists[i]);
    PyMem_Free(lists);
    PyMem_Free(table);
    PyMem_Free(reached);
    return result;
}

static PyMethodDef methods[] = {
    {"score", score, METH_VARARGS, score_doc},
    {"candidates", candidates, METH_VARARGS, candidates_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_scoring", "The inner loop of consultant.match.search, in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__scoring(void)
{
    return PyModule_Create(&module);
}
