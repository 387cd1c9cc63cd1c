// Checks of the tiled (flash) attention, native/cpu/flash_attention.h, run from ops_check.cpp's
// main (run_flash_attention_checks) and timed against attention.h by `plw_native_tests --bench`
// (bench_flash_attention). The same kinds of checks as ops_check.cpp's, with its helpers
// (check.h), on shapes that cross the kernel's tiles (T = 1, 7, 37, 100, 300: T not a multiple
// of a tile, several query and key tiles), head sizes 20, 64, 80, 96, 128, GQA n_rep 1, 2, 7,
// GPT-2's fused [q|k|v] rows and separate q/k/v buffers with padded rows:
//   forward       out vs attention_forward (attention.h) and vs the float64 reference
//                 (attention_reference.h, shared with ops_check.cpp); lse vs the float64
//                 log-sum-exp of the allowed scores
//   backward      vs a float64 analytic backward, vs attention_backward, and vs central finite
//                 differences of L = sum(g * out) (g random, fixed), L computed in double from
//                 the float forward of the kernel itself
//   accumulate    gradients pre-filled with G0 come out as G0 + the gradient; row padding of
//                 dq, dk, dv untouched
//   threads       out, lse, dq, dk, dv bitwise equal with 1, 2 and 3 OpenMP threads; where the
//                 shape has fewer (batch, KV head) pairs than threads (B*NKV = 1 or 2) the
//                 backward takes its parallel-items path, else one thread per pair, so this
//                 also checks that the two paths give the same bits
//   segments      a packed row of two segments gives what the two give as separate rows;
//                 interleaved ids; segments == nullptr bitwise == all-equal ids
//   GQA           == multi-head attention on K, V repeated per query head (repeat_kv): out,
//                 lse, dq bitwise; dk, dv the sums over the repeated heads
// The error metric and the generic tolerances (kTolRef, kTolAccum, kTolFd) are check.h's.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "../../native/cpu/attention.h"
#include "../../native/cpu/flash_attention.h"
#include "attention_reference.h"
#include "check.h"

using namespace plw_check;

namespace {

// flash vs attention.cpp, both f32: the same math summed in other orders (online softmax over
// key tiles, P recomputed from lse, tile products vs whole-row products). Measured at most
// 2.3e-7 (forward) and 3.3e-7 (backward) with scores ~N(0,1), 6.2e-7 and 1.4e-6 with the
// peaky x_scale = 3 case (scores ~9 N(0,1)); kTolRef (2e-5) keeps a 14x margin over the worst.
constexpr double kTolVsAttention = kTolRef;

// q, k, v (and dq, dk, dv) in one buffer X of an AttLayout (attention_reference.h, with
// ops_check.cpp's float64 reference); here one row padding for q and for k, v.
AttLayout layout(int B, int T, int NH, int NKV, int hs, bool fused, int pad = 0) {
    return AttLayout{B, T, NH, NKV, hs, fused, pad, pad};
}

std::string tag_of(const AttLayout& L) {
    return fmt("B=%d T=%d NH=%d NKV=%d hs=%d ", L.B, L.T, L.NH, L.NKV, L.hs) +
           (L.fused ? std::string("fused") : fmt("separate (pad %d)", L.pad_q));
}

void flash_forward(const AttLayout& L, Vec& out, Vec& lse, const Vec& X, const int32_t* seg) {
    plw::cpu::flash_attention_forward(out.data(), lse.data(), X.data(), X.data() + L.k_off(), X.data() + L.v_off(),
                                      seg, L.B, L.T, L.NH, L.NKV, L.hs, L.q_stride(), L.kv_stride());
}

void flash_backward(const AttLayout& L, Vec& dX, const Vec& g, const Vec& out, const Vec& lse, const Vec& X,
                    const int32_t* seg) {
    plw::cpu::flash_attention_backward(dX.data(), dX.data() + L.k_off(), dX.data() + L.v_off(), g.data(), out.data(),
                                       lse.data(), X.data(), X.data() + L.k_off(), X.data() + L.v_off(), seg, L.B,
                                       L.T, L.NH, L.NKV, L.hs, L.q_stride(), L.kv_stride());
}

// Forward then backward onto dX, as a training step runs them.
void flash_both(const AttLayout& L, Vec& out, Vec& lse, Vec& dX, const Vec& g, const Vec& X, const int32_t* seg) {
    flash_forward(L, out, lse, X, seg);
    flash_backward(L, dX, g, out, lse, X, seg);
}

// attention.h on the same buffers: out, and dX += its gradient.
void attention_both(const AttLayout& L, Vec& out, Vec& dX, const Vec& g, const Vec& X, const int32_t* seg) {
    Vec att(static_cast<size_t>(L.B) * L.NH * L.T * L.T);
    plw::cpu::attention_forward(out.data(), att.data(), X.data(), X.data() + L.k_off(), X.data() + L.v_off(), seg,
                                L.B, L.T, L.NH, L.NKV, L.hs, L.q_stride(), L.kv_stride());
    plw::cpu::attention_backward(dX.data(), dX.data() + L.k_off(), dX.data() + L.v_off(), g.data(), X.data(),
                                 X.data() + L.k_off(), X.data() + L.v_off(), att.data(), seg, L.B, L.T, L.NH, L.NKV,
                                 L.hs, L.q_stride(), L.kv_stride());
}

// x_scale: the std of q, k, v (scores s ~ x_scale^2 * N(0, 1)); 3 makes the softmax peaky and
// the running max move from key tile to key tile.
void test_flash(const AttLayout& L, const IVec& segments, const char* seg_desc, Rng& r, float x_scale = 1.0f) {
    const std::string tag = tag_of(L) + " " + seg_desc + (x_scale != 1.0f ? fmt(" x_scale=%g", x_scale) : "");
    const int32_t* seg = segments.empty() ? nullptr : segments.data();
    Vec X = randn(L.size(), r, x_scale);
    const Vec g = randn(L.n_out(), r);
    Vec out(L.n_out(), NAN), lse(L.n_lse(), NAN), dX(L.size(), 0.0f);  // out, lse: written whole
    flash_both(L, out, lse, dX, g, X, seg);
    DVec rout, ratt, rlse, rdX;
    attention_ref(rout, ratt, X, L, seg, &rlse);
    attention_backward_ref(rdX, g, X, ratt, L);
    Vec aout(L.n_out()), adX(L.size(), 0.0f);
    attention_both(L, aout, adX, g, X, seg);

    check_err("flash attention forward vs float64 " + tag, std::max(rel_err(out, rout), rel_err(lse, rlse, 1.0)),
              kTolRef);
    check_err("flash attention forward vs attention_forward " + tag, rel_err(out, aout), kTolVsAttention);
    check_err("flash attention backward vs float64 " + tag, rel_err(dX, rdX), kTolRef);
    check_err("flash attention backward vs attention_backward " + tag, rel_err(dX, adX), kTolVsAttention);

    auto loss = [&] {
        Vec o(L.n_out()), l(L.n_lse());
        flash_forward(L, o, l, X, seg);
        return dot_d(g, o);
    };
    check_err("flash attention backward vs finite differences " + tag, fd_err(loss, X, dX, r), kTolFd);

    const Vec g0 = randn(L.size(), r);
    Vec acc = g0;
    flash_backward(L, acc, g, out, lse, X, seg);
    check_err("flash attention backward accumulates (+=) " + tag, rel_err(acc, add(g0, dX)), kTolAccum);
    if (!L.fused) {
        report(padding_untouched(acc, g0, L),
               "flash attention backward leaves the row padding of dq, dk, dv untouched " + tag);
    }

    check_threads("flash attention " + tag, [&] {
        Vec o(L.n_out()), l(L.n_lse()), d = g0;
        flash_both(L, o, l, d, g, X, seg);
        return std::vector<Vec>{o, l, d};
    });
}

// A packed row [segment A (ids 7, length TA) | segment B (ids 3)] vs A and B each alone in a
// row: out, lse and the gradients agree to f32 rounding (the segment alone meets other tile
// boundaries, so the online softmax groups its keys otherwise). L has B = 1.
void test_flash_isolation(const AttLayout& L, int TA, Rng& r) {
    const int T = L.T, C = L.NH * L.hs;
    const std::string tag = tag_of(L) + fmt(" = %d + %d", TA, T - TA);
    const Vec X = randn(L.size(), r), g = randn(L.n_out(), r);
    IVec seg(T);
    for (int t = 0; t < T; t++) seg[t] = t < TA ? 7 : 3;
    Vec out(L.n_out()), lse(L.n_lse()), d(L.size(), 0.0f);
    flash_both(L, out, lse, d, g, X, seg.data());
    double err = 0.0;
    for (int part = 0; part < 2; part++) {
        const int t0 = part == 0 ? 0 : TA, len = part == 0 ? TA : T - TA;
        const AttLayout L1 = L.with_rows(1, len);
        const Vec X1 = rows_of(X, L, t0, len);
        const Vec g1(g.begin() + static_cast<size_t>(t0) * C, g.begin() + static_cast<size_t>(t0 + len) * C);
        Vec o1(L1.n_out()), l1(L1.n_lse()), d1(L1.size(), 0.0f);
        flash_both(L1, o1, l1, d1, g1, X1, nullptr);
        err = std::max(err, rel_err(Vec(out.begin() + static_cast<size_t>(t0) * C,
                                        out.begin() + static_cast<size_t>(t0 + len) * C), o1));
        Vec lpart;
        for (int h = 0; h < L.NH; h++)
            lpart.insert(lpart.end(), lse.begin() + static_cast<size_t>(h) * T + t0,
                         lse.begin() + static_cast<size_t>(h) * T + t0 + len);
        err = std::max(err, rel_err(lpart, l1, 1.0));
        err = std::max(err, rel_err(rows_of(d, L, t0, len), d1));
    }
    check_err("flash attention packed row == segments alone (out, lse, dq/dk/dv) " + tag, err, kTolAccum);
}

// segments == nullptr is one segment per row: bitwise what all-equal ids give.
void test_flash_null_segments(const AttLayout& L, Rng& r) {
    const Vec X = randn(L.size(), r), g = randn(L.n_out(), r);
    const IVec seg(L.rows(), 5);
    std::vector<Vec> res;
    for (const int32_t* s : {static_cast<const int32_t*>(nullptr), seg.data()}) {
        Vec o(L.n_out()), l(L.n_lse()), d(L.size(), 0.0f);
        flash_both(L, o, l, d, g, X, s);
        res.insert(res.end(), {o, l, d});
    }
    bool same = true;
    for (int k = 0; k < 3; k++) same = same && res[k] == res[k + 3];
    report(same, "flash attention segments=nullptr == all-equal segment ids, bitwise  " + tag_of(L));
}

// GQA == multi-head attention on K and V with each KV head repeated NH/NKV times: out, lse and
// dq bitwise (each query head runs the same products on the same values, tile for tile), and
// dk, dv the sums of the repeated heads' gradients (kTolAccum: the kernel adds the query heads'
// parts in f32, the check in double).
void test_flash_gqa_vs_repeat(const AttLayout& L, const IVec& segments, Rng& r) {
    const AttLayout M = repeat_kv_layout(L);
    const int32_t* seg = segments.empty() ? nullptr : segments.data();
    const Vec X = randn(L.size(), r), g = randn(L.n_out(), r);
    const Vec XM = repeat_kv(X, L);
    Vec o(L.n_out()), l(L.n_lse()), d(L.size(), 0.0f), oM(M.n_out()), lM(M.n_lse()), dM(M.size(), 0.0f);
    flash_both(L, o, l, d, g, X, seg);
    flash_both(M, oM, lM, dM, g, XM, seg);
    DVec dkv, dkvM;  // dk, dv of L and the sums over the repeated heads of M
    const bool same_dq = compare_repeat_kv_grads(dkv, dkvM, d, dM, L);
    const bool same = o == oM && l == lM && same_dq;
    report(same, "flash attention GQA == MHA on repeated KV heads: out, lse, dq bitwise  " + tag_of(L));
    check_err("flash attention GQA dk, dv == sums over the repeated heads " + tag_of(L), rel_err(dkv, dkvM), kTolAccum);
}

}  // namespace

void run_flash_attention_checks() {
    Rng r(20261205);
    // tiny and odd shapes, GPT-2's fused layout and separate padded buffers
    test_flash(layout(1, 1, 1, 1, 4, true), {}, "segments=null", r);
    test_flash(layout(2, 7, 3, 3, 20, true), {}, "segments=null", r);
    test_flash(layout(1, 37, 7, 1, 20, false, 3), {}, "segments=null", r);  // n_rep 7
    test_flash(layout(2, 37, 4, 2, 64, false, 0), {}, "segments=null", r);  // n_rep 2
    // several query and key tiles, T not a multiple of a tile, the head sizes of real models
    test_flash(layout(1, 100, 2, 2, 64, true), {}, "segments=null", r);
    test_flash(layout(1, 300, 2, 1, 64, false, 5), {}, "segments=null", r);
    test_flash(layout(1, 130, 4, 2, 80, false, 0), {}, "segments=null", r);
    test_flash(layout(2, 70, 2, 1, 96, false, 0), {}, "segments=null", r);
    test_flash(layout(1, 150, 2, 2, 128, true), {}, "segments=null", r);
    test_flash(layout(3, 90, 7, 1, 16, false, 1), {}, "segments=null", r);  // 3 pairs
    test_flash(layout(1, 200, 2, 1, 32, false, 0), {}, "segments=null", r, 3.0f);  // peaky softmax
    // packed rows: segments crossing tiles, a segment of length 1, padding sharing the last id,
    // interleaved ids (a segment that comes back later in the row)
    {
        IVec packed(2 * 150);
        for (int t = 0; t < 300; t++) {
            const int u = t % 150;
            packed[t] = t < 150 ? (u < 40 ? 0 : u < 41 ? 1 : u < 110 ? 2 : 3) : (u < 90 ? 5 : 6);
        }
        test_flash(layout(2, 150, 4, 2, 32, false, 2), packed, "packed", r);
        test_flash(layout(2, 150, 3, 3, 16, true), packed, "packed", r);
    }
    {
        IVec inter(97);
        for (int t = 0; t < 97; t++) inter[t] = (t * 7 / 5) % 3;  // runs of 1..2, ids coming back
        test_flash(layout(1, 97, 2, 1, 24, false, 0), inter, "interleaved ids", r);
    }
    {
        IVec runs(260);  // long runs of ids 4, 9, 4: the last segment sees keys of the first
        for (int t = 0; t < 260; t++) runs[t] = t < 70 ? 4 : t < 180 ? 9 : 4;
        test_flash(layout(1, 260, 2, 2, 16, true), runs, "ids 4|9|4", r);
    }
    test_flash_isolation(layout(1, 41, 2, 1, 16, false, 1), 17, r);
    test_flash_isolation(layout(1, 300, 2, 2, 32, true), 131, r);
    test_flash_null_segments(layout(2, 19, 4, 2, 8, false, 0), r);
    test_flash_null_segments(layout(1, 200, 2, 2, 16, true), r);
    test_flash_gqa_vs_repeat(layout(2, 33, 4, 2, 16, false, 0), {}, r);
    test_flash_gqa_vs_repeat(layout(1, 140, 7, 1, 20, false, 2), {}, r);
}

void bench_flash_attention() {
    Rng r(97);
    std::printf("bench: flash attention vs attention.h (forward + backward), %d OpenMP threads\n",
                omp_get_max_threads());
    struct Shape { int B, T, NH, NKV, hs; };
    for (const Shape s : {Shape{4, 256, 12, 12, 64}, Shape{4, 256, 8, 2, 64}, Shape{4, 1024, 12, 12, 64},
                          Shape{4, 1024, 8, 2, 64}, Shape{4, 2048, 12, 12, 64}, Shape{4, 2048, 8, 2, 64}}) {
        const AttLayout L{s.B, s.T, s.NH, s.NKV, s.hs, s.NKV == s.NH};
        const Vec X = randn(L.size(), r), g = randn(L.n_out(), r);
        Vec out(L.n_out()), lse(L.n_lse()), d(L.size(), 0.0f);
        const double ff = time_ms([&] { flash_forward(L, out, lse, X, nullptr); });
        const double fb = time_ms([&] { flash_backward(L, d, g, out, lse, X, nullptr); });
        Vec att(static_cast<size_t>(L.B) * L.NH * L.T * L.T);
        const double af = time_ms([&] {
            plw::cpu::attention_forward(out.data(), att.data(), X.data(), X.data() + L.k_off(), X.data() + L.v_off(),
                                        nullptr, L.B, L.T, L.NH, L.NKV, L.hs, L.q_stride(), L.kv_stride());
        });
        const double ab = time_ms([&] {
            plw::cpu::attention_backward(d.data(), d.data() + L.k_off(), d.data() + L.v_off(), g.data(), X.data(),
                                         X.data() + L.k_off(), X.data() + L.v_off(), att.data(), nullptr, L.B, L.T,
                                         L.NH, L.NKV, L.hs, L.q_stride(), L.kv_stride());
        });
        // causal: ~T^2/2 (query, key) pairs per head, 2 FLOP per channel per product;
        // forward 2 products (q.k, P.v), backward 4 (dP, dv, dq, dk) (flash recomputes S: 5)
        const double pairs = static_cast<double>(s.B) * s.NH * s.T * (s.T + 1) / 2.0;
        const double flop = 2.0 * pairs * s.hs * 1e3;
        const std::string tag = fmt("B=%d T=%d NH=%d NKV=%d hs=%d", s.B, s.T, s.NH, s.NKV, s.hs);
        bench_line("flash attention " + tag, ff, fb, 2.0 * flop, 4.0 * flop, "GFLOP/s");
        bench_line("attention       " + tag, af, ab, 2.0 * flop, 4.0 * flop, "GFLOP/s");
        std::printf("bench flash / attention (forward + backward) %s: %.2f\n", tag.c_str(), (ff + fb) / (af + ab));
    }
}
