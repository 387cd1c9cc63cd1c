// CPU reference: causal multi-head self-attention computed tile by tile, flash-attention style
// (see flash_attention.h). Same op, masks and GQA as attention.cpp, with O(T) memory per head:
// no (T,T) buffer anywhere; the forward keeps one log-sum-exp per query row, the backward
// recomputes the probabilities from it. The CUDA twin (native/cuda/flash_attention.h) has the
// same interface and math.
//
// Shapes: B = batch, T = time, NH = query heads, NKV = key/value heads, hs = head size,
// n_rep = NH / NKV; query head h reads KV head j = h / n_rep.
//   q    rows of q_stride floats, query head h at channels [h*hs, (h+1)*hs) of each row
//   k, v rows of kv_stride floats, KV head j at channels [j*hs, (j+1)*hs)
//   out  (B,T,NH*hs)  heads concatenated
//   lse  (B,NH,T)     log-sum-exp of each query row's allowed scores s = q.k / sqrt(hs)
//   dq, dk, dv        accumulated (+=), strides of q, k, v
//
// Forward, per (batch, query head, tile of BR query rows) task: the keys the tile may see,
// [first key of its segments, last query row], are taken in tiles of BC keys with the online
// softmax: S = Q K^T / sqrt(hs) (BR,BC) on the SGEMM, the masked entries -inf; per row the
// running max m and sum l, the tile's P = exp(S - m_new), O *= exp(m_old - m_new), l = l *
// exp(m_old - m_new) + rowsum(P), then O += P V on the SGEMM; at the end out = O / l and
// lse = m + log(l). Key tiles past the tile's last row (causality) are never visited and
// those before its segments' first key are skipped, so the products cover ~T^2/2 (query, key)
// pairs per head instead of attention.cpp's full T^2.
//
// Backward, FlashAttention-2 style in the key-tile-outer order, per (batch, KV head) pair,
// which owns its KV head's channels of dk and dv and the channels of dq of its n_rep query
// heads (as in attention.cpp). D = rowsum(dO * O) per query row first; then for each tile of
// BCB keys [c0, c1), with dK, dV accumulators (BCB,hs), over the items (query head r, chunk of
// BQ query rows from c0 up to the last row that may see the tile), r outer and chunks inner:
//   S = Q K^T / sqrt(hs), P = exp(S - lse) (0 where masked), dP = dO V^T,
//   dS = P * (dP - D) / sqrt(hs),   dq[chunk] += dS K,
//   item's dV part = P^T dO, item's dK part = dS^T Q   (SGEMM with beta = 0)
// and the items' parts are added to dK, dV in item order; after the tile's last item,
// dk[tile] += dK, dv[tile] += dV. So a KV head's gradient sums its query heads in increasing
// head order, and each dq row sums its key tiles in increasing order, whatever the threads.
// The probabilities are recomputed once per (query, key) pair: 5 products on ~T^2/2 pairs
// against attention.cpp's 4 on T^2 (its backward reads att instead of recomputing it).
//
// Threads. The forward runs over its (batch, query head, query tile) tasks, the last query
// tiles (the most keys) first, dynamic schedule, one thread per task. The backward runs over
// the B*NKV pairs when there are at least as many pairs as threads (dynamic schedule, one
// thread per pair). With fewer pairs (small B, few KV heads) the pairs run one after another
// and the items of each key tile run in parallel, in batches of 2 x threads items, each
// writing its dK, dV parts to a slot of its own; the slots are then added in item order. Each
// item writes the dq rows of its own (head, chunk) only, so the items of a key tile never
// write the same dq element. The two ways differ only in which thread runs an item, not in
// what is computed nor in the order of the sums (the per-element arithmetic both call is in
// noinline functions: one compiled copy). Every SGEMM runs inside a parallel region on one
// thread, and the SGEMM never splits a reduction anyway; a P or dS row is one thread's. So
// each output element comes from the same operations in the same order for any number of
// threads: the results are bitwise the same. Why not the other common answers: atomics on dq
// would make the sums' order depend on timing, and a separate dQ pass over query tiles
// would recompute S and dP a second time (7 products instead of 5).
//
// Scratch: per thread a few tiles, (BR,BC) + (BR,hs) forward and 2 x (BQ,BCB) + 4 x (BCB,hs)
// backward, plus D (n_rep, T) and run starts (T): see flash_attention_scratch_bytes.
//
// Masks. A tile is either full (every key before every query, one segment id across the tile)
// or masked entry by entry (S = -inf where the key is after the query or in another
// segment; those entries get P = 0 exactly, not exp(-87.3)). Segments are found by their runs
// of equal ids; ids need not be ordered and a segment may come back later in the row (the
// ids decide, as in attention.cpp). segments == nullptr is one segment per row.
//
// Softmax in f32 (exp_nonpositive); a query always sees itself, so l >= 1.
#include "flash_attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "matmul.h"
#include "vec_math.h"

namespace plw::cpu {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Tiles (measured on the 2-core Zen machine of matmul.cpp's notes, hs = 64, T = 256 and 1024;
// the choices within noise of each other were settled by the reasons given):
//   forward   BR = 64 query rows x BC = 256 keys. The causal waste of a query tile is its
//             diagonal block, BR^2/2 pairs whatever BC is, so BR stays small (32 repacked the
//             keys too often) and BC large: fewer online-softmax rescales and SGEMM calls.
//   backward  BCB = 64 keys x BQ = 256 query rows. Here the diagonal block of each key tile,
//             BCB^2/2 pairs, is the waste (25% of the causal half at T = 256 for 64, 50% for
//             128); a chunk of BQ <= 256 rows keeps each dK, dV part one K block of the SGEMM
//             and the (BQ,BCB) P and dS tiles in L2.
constexpr int BR = 64;
constexpr int BC = 256;
constexpr int BQ = 256;
constexpr int BCB = 64;

// ---------------------------------------------------------------- masks

// rs[t] = the first position of the run of equal segment ids that holds t.
void run_starts(int* rs, const int32_t* seg, int T) {
    for (int t = 0; t < T; t++) rs[t] = (t > 0 && seg[t - 1] == seg[t]) ? rs[t - 1] : t;
}

// True when query rows [i0, i1) see every key of [c0, c1): each key at or before the first
// row, and (segments) one id over all of them. rs == nullptr: no segments.
bool tile_full(const int* rs, int i0, int i1, int c0, int c1) {
    if (c1 - 1 > i0) return false;
    if (!rs) return true;
    return rs[std::max(i1, c1) - 1] <= std::min(i0, c0);
}

// S (i1-i0, c1-c0), row stride ld: -inf where query t may not see key t2.
void mask_tile(float* S, int ld, const int32_t* seg, int i0, int i1, int c0, int c1) {
    for (int t = i0; t < i1; t++) {
        float* s = S + static_cast<size_t>(t - i0) * ld;
        if (seg) {
            const int32_t id = seg[t];
            for (int t2 = c0; t2 < c1; t2++)
                if (t2 > t || seg[t2] != id) s[t2 - c0] = kNegInf;
        } else {
            for (int t2 = std::max(c0, t + 1); t2 < c1; t2++) s[t2 - c0] = kNegInf;
        }
    }
}

// The first key that some query row of [i0, i1) may see: the earliest position of any of the
// rows' segment ids (0 without segments). Keys before it are masked for the whole tile.
int first_key(const int32_t* seg, const int* rs, int i0, int i1) {
    if (!seg) return 0;
    int lo = i0;
    for (int t = i1 - 1; t >= i0; t = rs[t] - 1) {  // one id per run of the tile
        lo = std::min(lo, rs[t]);
        const int32_t id = seg[t];
        for (int t2 = 0; t2 < lo; t2++) {
            if (seg[t2] == id) {
                lo = t2;
                break;
            }
        }
    }
    return lo;
}

// One past the last query row that may see some key of [c0, c1): the last position of any of
// the keys' segment ids (T without segments). Rows after it are masked for the whole key tile.
int query_end(const int32_t* seg, const int* rs, int T, int c0, int c1) {
    if (!seg) return T;
    int hi = c1;  // the tile's last key sees itself
    for (int t2 = c1 - 1; t2 >= c0; t2 = rs[t2] - 1) {  // one id per run of the tile
        const int32_t id = seg[t2];
        for (int t = T - 1; t >= hi; t--) {
            if (seg[t] == id) {
                hi = t + 1;
                break;
            }
        }
    }
    return hi;
}

// ---------------------------------------------------------------- forward

// One task: query rows [i0, i1) of one query head.
//   qh (T rows of q_stride), kh, vh (T rows of kv_stride): the head's q and its KV head's k, v
//   o (rows of C), lse_h (T): the head's out and lse
//   S (BR,BC), O (BR,hs), m, l (BR): scratch
void forward_tile(float* o, float* lse_h, float* S, float* O, float* m, float* l, const float* qh, const float* kh,
                  const float* vh, const int32_t* seg, const int* rs, int i0, int i1, int hs, int C, int q_stride,
                  int kv_stride, float scale) {
    const int nr = i1 - i0;
    std::fill(m, m + nr, kNegInf);
    std::fill(l, l + nr, 0.0f);
    std::fill(O, O + static_cast<size_t>(nr) * hs, 0.0f);
    for (int c0 = first_key(seg, rs, i0, i1); c0 < i1; c0 += BC) {
        const int c1 = std::min(i1, c0 + BC), nc = c1 - c0;
        sgemm(false, true, nr, nc, hs, scale, qh + static_cast<size_t>(i0) * q_stride, q_stride,
              kh + static_cast<size_t>(c0) * kv_stride, kv_stride, 0.0f, S, BC);  // S = Q K^T / sqrt(hs)
        if (!tile_full(rs, i0, i1, c0, c1)) mask_tile(S, BC, seg, i0, i1, c0, c1);
        for (int r = 0; r < nr; r++) {
            float* s = S + static_cast<size_t>(r) * BC;
            float mx = kNegInf;
#pragma omp simd reduction(max : mx)
            for (int c = 0; c < nc; c++) mx = s[c] > mx ? s[c] : mx;
            const float m_new = std::max(m[r], mx);
            if (m_new == kNegInf) {  // no key of this row so far: P = 0
                std::fill(s, s + nc, 0.0f);
                continue;
            }
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int c = 0; c < nc; c++) {
                const float p = s[c] == kNegInf ? 0.0f : exp_nonpositive(s[c] - m_new);
                s[c] = p;
                sum += p;
            }
            if (m_new != m[r]) {
                const float alpha = m[r] == kNegInf ? 0.0f : exp_nonpositive(m[r] - m_new);
                float* orow = O + static_cast<size_t>(r) * hs;
#pragma omp simd
                for (int d = 0; d < hs; d++) orow[d] *= alpha;
                l[r] *= alpha;
                m[r] = m_new;
            }
            l[r] += sum;
        }
        sgemm(false, false, nr, hs, nc, 1.0f, S, BC, vh + static_cast<size_t>(c0) * kv_stride, kv_stride, 1.0f, O,
              hs);  // O += P V
    }
    for (int r = 0; r < nr; r++) {
        const float inv = 1.0f / l[r];
        float* orow = o + static_cast<size_t>(i0 + r) * C;
        const float* a = O + static_cast<size_t>(r) * hs;
#pragma omp simd
        for (int d = 0; d < hs; d++) orow[d] = a[d] * inv;
        lse_h[i0 + r] = m[r] + std::log(l[r]);
    }
}

// ---------------------------------------------------------------- backward

// One (batch, KV head) pair's operands and outputs.
struct Pair {
    const float* q;     // its first query head: T rows of q_stride, head r at + r*hs
    float* dq;          // the same places in dq
    const float* dout;  // its first query head's channels of dout and out: T rows of C, head r at + r*hs
    const float* out;
    const float* lse;   // its query heads' lse (n_rep, T)
    float* D;           // rowsum(dO * O) of its query heads (n_rep, T), filled by rowsum_dout_out
    const float* k;     // its KV head: T rows of kv_stride
    const float* v;
    float* dk;          // the same places in dk, dv
    float* dv;
    const int32_t* seg;  // (T), nullptr: one segment
    const int* rs;       // run starts of seg (T), nullptr without segments
    int T, n_rep, hs, C, q_stride, kv_stride;
    float scale;
};

// The per-element arithmetic that both threading modes of the backward run is in the
// noinline functions below: one compiled copy, so the same instructions whichever mode calls.

// Rows [t0, t1) of p.D: rowsum(dO * O) for each query head of the pair.
__attribute__((noinline)) void rowsum_dout_out(const Pair& p, int t0, int t1) {
    for (int r = 0; r < p.n_rep; r++) {
        for (int t = t0; t < t1; t++) {
            const float* a = p.dout + static_cast<size_t>(t) * p.C + static_cast<size_t>(r) * p.hs;
            const float* o = p.out + static_cast<size_t>(t) * p.C + static_cast<size_t>(r) * p.hs;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int d = 0; d < p.hs; d++) s += a[d] * o[d];
            p.D[static_cast<size_t>(r) * p.T + t] = s;
        }
    }
}

// One item: keys [c0, c1) against query rows [i0, i1) of the pair's query head r.
// dq rows [i0, i1) of head r += dS K; pk, pv (c1-c0, hs) = the item's dK, dV parts
// (overwritten). P, dS: (BQ,BCB) scratch.
__attribute__((noinline)) void backward_item(float* pk, float* pv, float* P, float* dS, const Pair& p, int r, int i0,
                                             int i1, int c0, int c1) {
    const int nr = i1 - i0, nc = c1 - c0, hs = p.hs;
    const float* Q = p.q + static_cast<size_t>(i0) * p.q_stride + static_cast<size_t>(r) * hs;
    float* dQ = p.dq + static_cast<size_t>(i0) * p.q_stride + static_cast<size_t>(r) * hs;
    const float* dO = p.dout + static_cast<size_t>(i0) * p.C + static_cast<size_t>(r) * hs;
    const float* K = p.k + static_cast<size_t>(c0) * p.kv_stride;
    const float* V = p.v + static_cast<size_t>(c0) * p.kv_stride;
    const float* L = p.lse + static_cast<size_t>(r) * p.T + i0;
    const float* Dr = p.D + static_cast<size_t>(r) * p.T + i0;
    sgemm(false, true, nr, nc, hs, p.scale, Q, p.q_stride, K, p.kv_stride, 0.0f, P, BCB);  // S = Q K^T / sqrt(hs)
    if (!tile_full(p.rs, i0, i1, c0, c1)) mask_tile(P, BCB, p.seg, i0, i1, c0, c1);
    sgemm(false, true, nr, nc, hs, 1.0f, dO, p.C, V, p.kv_stride, 0.0f, dS, BCB);  // dP = dO V^T
    for (int i = 0; i < nr; i++) {
        float* pr = P + static_cast<size_t>(i) * BCB;
        float* dr = dS + static_cast<size_t>(i) * BCB;
        const float li = L[i], di = Dr[i];
#pragma omp simd
        for (int c = 0; c < nc; c++) {
            const float pp = pr[c] == kNegInf ? 0.0f : exp_nonpositive(pr[c] - li);
            pr[c] = pp;
            dr[c] = pp * (dr[c] - di) * p.scale;
        }
    }
    sgemm(false, false, nr, hs, nc, 1.0f, dS, BCB, K, p.kv_stride, 1.0f, dQ, p.q_stride);  // dq += dS K
    sgemm(true, false, nc, hs, nr, 1.0f, dS, BCB, Q, p.q_stride, 0.0f, pk, hs);           // dS^T Q
    sgemm(true, false, nc, hs, nr, 1.0f, P, BCB, dO, p.C, 0.0f, pv, hs);                 // P^T dO
}

// acc[x] += part[x] for x in [x0, x1): one rounding per element.
__attribute__((noinline)) void add_to(float* acc, const float* part, size_t x0, size_t x1) {
#pragma omp simd
    for (size_t x = x0; x < x1; x++) acc[x] += part[x];
}

// Elements [x0, x1) of the pair's key tile at c0: dk += dK, dv += dV, with dK, dV (c1-c0, hs)
// (element x is key c0 + x / hs, channel x % hs).
__attribute__((noinline)) void add_tile(const Pair& p, const float* dK, const float* dV, int c0, size_t x0,
                                        size_t x1) {
    const size_t hs = static_cast<size_t>(p.hs);
    for (size_t x = x0; x < x1;) {
        const size_t row = x / hs, col = x % hs, end = std::min(x1, (row + 1) * hs);
        const size_t at = (static_cast<size_t>(c0) + row) * p.kv_stride + col;
        add_to(p.dk + at, dK + x, 0, end - x);
        add_to(p.dv + at, dV + x, 0, end - x);
        x = end;
    }
}

}  // namespace

size_t flash_attention_scratch_bytes(int T, int NH, int hs, int threads) {
    const size_t Ts = static_cast<size_t>(T), nt = static_cast<size_t>(std::max(threads, 1));
    const size_t tile = static_cast<size_t>(BCB) * hs;
    // forward, per thread: S (BR,BC), O (BR,hs), m, l (BR), run starts (T)
    const size_t fwd = nt * (BR * BC + static_cast<size_t>(BR) * hs + 2 * BR + Ts);
    // backward, one thread per pair, per thread: P, dS (BQ,BCB), D (n_rep <= NH, T), run
    // starts (T), an item's dK, dV parts and the dK, dV accumulators (BCB,hs) each
    const size_t per_pair = nt * (2 * BQ * BCB + static_cast<size_t>(NH) * Ts + Ts + 4 * tile);
    // backward, items in parallel: per thread P, dS, run starts; shared D, dK, dV and the two
    // sets of 2 * threads slots of an item's dK, dV parts
    const size_t items = nt * (2 * BQ * BCB + Ts + 8 * tile) + static_cast<size_t>(NH) * Ts + 2 * tile;
    return std::max({fwd, per_pair, items}) * sizeof(float);  // int32 run starts: 4 bytes too
}

void flash_attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                             const int32_t* segments, int B, int T, int NH, int NKV, int hs, int q_stride,
                             int kv_stride) {
    const int n_rep = NH / NKV;
    const int C = NH * hs;  // out's row
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
    const int nqt = (T + BR - 1) / BR;  // query tiles per head
    const int tasks = B * NH * nqt;
#pragma omp parallel
    {
        std::vector<float> S(static_cast<size_t>(BR) * BC), O(static_cast<size_t>(BR) * hs), m(BR), l(BR);
        std::vector<int> rs(segments ? T : 0);
        int rs_b = -1;  // the batch row whose run starts rs holds
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < tasks; task++) {
            const int qt = nqt - 1 - task / (B * NH);  // the last query tiles (most keys) first
            const int bh = task % (B * NH), b = bh / NH, h = bh % NH, j = h / n_rep;
            const size_t row0 = static_cast<size_t>(b) * T;
            const int32_t* seg = segments ? segments + row0 : nullptr;
            if (seg && rs_b != b) {
                run_starts(rs.data(), seg, T);
                rs_b = b;
            }
            const int i0 = qt * BR, i1 = std::min(T, i0 + BR);
            forward_tile(out + row0 * C + static_cast<size_t>(h) * hs, lse + static_cast<size_t>(bh) * T, S.data(),
                         O.data(), m.data(), l.data(), q + row0 * q_stride + static_cast<size_t>(h) * hs,
                         k + row0 * kv_stride + static_cast<size_t>(j) * hs,
                         v + row0 * kv_stride + static_cast<size_t>(j) * hs, seg, seg ? rs.data() : nullptr, i0, i1,
                         hs, C, q_stride, kv_stride, scale);
        }
    }
}

void flash_attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                              const float* lse, const float* q, const float* k, const float* v,
                              const int32_t* segments, int B, int T, int NH, int NKV, int hs, int q_stride,
                              int kv_stride) {
    if (B <= 0 || T <= 0) return;
    const int n_rep = NH / NKV;
    const int C = NH * hs;  // dout's and out's row
    const size_t tile = static_cast<size_t>(BCB) * hs;
    auto pair_of = [&](int bj, float* D, int* rs) {
        const int b = bj / NKV, j = bj % NKV;
        const size_t row0 = static_cast<size_t>(b) * T;
        const size_t q0 = row0 * q_stride + static_cast<size_t>(j) * n_rep * hs;
        const size_t kv0 = row0 * kv_stride + static_cast<size_t>(j) * hs;
        const size_t o0 = row0 * C + static_cast<size_t>(j) * n_rep * hs;
        const int32_t* seg = segments ? segments + row0 : nullptr;
        if (seg) run_starts(rs, seg, T);
        const size_t lse0 = (static_cast<size_t>(b) * NH + static_cast<size_t>(j) * n_rep) * T;
        return Pair{q + q0, dq + q0, dout + o0, out + o0, lse + lse0, D, k + kv0, v + kv0, dk + kv0, dv + kv0, seg,
                    seg ? rs : nullptr, T, n_rep, hs, C, q_stride, kv_stride,
                    1.0f / std::sqrt(static_cast<float>(hs))};
    };
    const int pairs = B * NKV;
    if (pairs >= omp_get_max_threads()) {
        // ---- one thread per pair
#pragma omp parallel
        {
            std::vector<float> P(static_cast<size_t>(BQ) * BCB), dS(P.size()), D(static_cast<size_t>(n_rep) * T);
            std::vector<float> pk(tile), pv(tile), dK(tile), dV(tile);
            std::vector<int> rs(segments ? T : 0);
#pragma omp for schedule(dynamic, 1)
            for (int bj = 0; bj < pairs; bj++) {
                const Pair p = pair_of(bj, D.data(), rs.data());
                rowsum_dout_out(p, 0, T);
                for (int c0 = 0; c0 < T; c0 += BCB) {
                    // the key tile's items: (query head r, chunk of BQ rows from c0), r outer
                    const int c1 = std::min(T, c0 + BCB), qend = query_end(p.seg, p.rs, T, c0, c1);
                    const int nch = (qend - c0 + BQ - 1) / BQ;
                    const size_t n = static_cast<size_t>(c1 - c0) * hs;
                    std::fill(dK.begin(), dK.end(), 0.0f);
                    std::fill(dV.begin(), dV.end(), 0.0f);
                    for (int it = 0; it < n_rep * nch; it++) {
                        const int r = it / nch, i0 = c0 + (it % nch) * BQ;
                        backward_item(pk.data(), pv.data(), P.data(), dS.data(), p, r, i0, std::min(qend, i0 + BQ),
                                      c0, c1);
                        add_to(dK.data(), pk.data(), 0, n);
                        add_to(dV.data(), pv.data(), 0, n);
                    }
                    add_tile(p, dK.data(), dV.data(), c0, 0, n);
                }
            }
        }
        return;
    }
    // ---- fewer pairs than threads: the pairs one after another, the items of a key tile spread
    // over the threads (dynamic schedule), in batches of up to `slots` items whose dK, dV parts
    // go to a slot each and are then added in item order, each thread adding its slice of the
    // elements. Two sets of slots, used in turn: a batch writes one set while slower threads may
    // still add the previous batch from the other, so one barrier (the work-sharing loop's) per
    // batch is enough. D rows and dK, dV elements are sliced per thread, the same way at every
    // step, so each thread only ever writes and adds its own slice.
    const int slots = 2 * omp_get_max_threads();
    std::vector<float> D(static_cast<size_t>(n_rep) * T), dK(tile), dV(tile);
    std::vector<float> parts(2 * static_cast<size_t>(slots) * 2 * tile);  // (set, slot, dK part | dV part)
#pragma omp parallel
    {
        const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
        std::vector<float> P(static_cast<size_t>(BQ) * BCB), dS(P.size());
        std::vector<int> rs(segments ? T : 0);
        int set = 0;
        for (int bj = 0; bj < pairs; bj++) {
            const Pair p = pair_of(bj, D.data(), rs.data());  // rs: each thread's own copy
            rowsum_dout_out(p, static_cast<int>(static_cast<long>(T) * tid / nt),
                            static_cast<int>(static_cast<long>(T) * (tid + 1) / nt));
#pragma omp barrier
            for (int c0 = 0; c0 < T; c0 += BCB) {
                const int c1 = std::min(T, c0 + BCB), qend = query_end(p.seg, p.rs, T, c0, c1);
                const int nch = (qend - c0 + BQ - 1) / BQ, items = n_rep * nch;
                const size_t n = static_cast<size_t>(c1 - c0) * hs;
                // this thread's slice: a fixed part of a full tile, so the slices of two
                // threads never overlap, from one key tile to the next
                const size_t x0 = std::min(n, tile * tid / nt), x1 = std::min(n, tile * (tid + 1) / nt);
                std::fill(dK.begin() + x0, dK.begin() + x1, 0.0f);
                std::fill(dV.begin() + x0, dV.begin() + x1, 0.0f);
                for (int b0 = 0; b0 < items; b0 += slots) {
                    const int bn = std::min(slots, items - b0);
                    float* part = parts.data() + static_cast<size_t>(set) * slots * 2 * tile;
#pragma omp for schedule(dynamic, 1)
                    for (int u = 0; u < bn; u++) {
                        const int it = b0 + u, r = it / nch, i0 = c0 + (it % nch) * BQ;
                        float* pk = part + static_cast<size_t>(u) * 2 * tile;
                        backward_item(pk, pk + tile, P.data(), dS.data(), p, r, i0, std::min(qend, i0 + BQ), c0, c1);
                    }
                    for (int u = 0; u < bn; u++) {
                        add_to(dK.data(), part + static_cast<size_t>(u) * 2 * tile, x0, x1);
                        add_to(dV.data(), part + static_cast<size_t>(u) * 2 * tile + tile, x0, x1);
                    }
                    set ^= 1;
                }
                add_tile(p, dK.data(), dV.data(), c0, x0, x1);
            }
#pragma omp barrier
        }
    }
}

}  // namespace plw::cpu
