// The elementwise and row ops in the emulator against the CPU reference: layernorm, gelu,
// residual, embedding (with and without a position table, and the id range check) and the f32 <-> bf16 conversion, f32 and
// bf16, on aligned and misaligned buffers (vector and scalar paths) and odd sizes.
//
// Tolerances. f32: 1e-5 relative (+ a small absolute term), the same math in another order;
// ops whose f32 math is the CPU's exactly (residual, embedding) match bit for bit. bf16
// results vs the CPU's f32 result on the same (bf16-rounded) inputs: 2^-8 |ref| (round to
// nearest even is half an ulp, an ulp at most 2^-7 |x|) on top of the f32 tolerance, and bit
// for bit f32_to_bf16(ref) where the f32 math is exact.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "native/cpu/embedding.h"
#include "native/cpu/gelu.h"
#include "native/cpu/layernorm.h"
#include "native/cpu/residual.h"
#include "native/cuda/convert.h"
#include "native/cuda/embedding.h"
#include "native/cuda/gelu.h"
#include "native/cuda/layernorm.h"
#include "native/cuda/residual.h"
#include "support.h"

using plw::bf16;
using plw::bf16_to_f32;
using plw::f32_to_bf16;

namespace {

using test::alloc;
using test::compare;
using test::compare_bf16;
using test::fill;
using test::rne_fraction;
using test::to_bf16;

// got == f32_to_bf16(ref) bit for bit (NaN: both NaN)
void bf16_exact(const char* what, const bf16* got, const float* ref, size_t n) {
    int bad = 0;
    size_t first = 0;
    for (size_t i = 0; i < n; i++) {
        const bf16 r = f32_to_bf16(ref[i]);
        const bool ok = got[i].bits == r.bits ||
                        (std::isnan(ref[i]) && std::isnan(bf16_to_f32(got[i])));
        if (!ok && bad++ == 0) first = i;
    }
    EXPECT(bad == 0, "%s: %d of %zu not f32_to_bf16(ref); first at %zu got %04x want %04x", what,
           bad, n, first, got[first].bits, f32_to_bf16(ref[first]).bits);
}

double worst_bf16 = 0;  // worst error / tolerance over the bf16 comparisons
double min_rne = 1.0;   // smallest fraction of results equal to f32_to_bf16(ref)
void note(double w, double rne) {
    worst_bf16 = std::max(worst_bf16, w);
    min_rne = std::min(min_rne, rne);
}

// ---------------------------------------------------------------- layernorm
void test_layernorm(int N, int C, int off) {
    const size_t NC = size_t(N) * C;
    float* inp = alloc<float>(NC, off);
    float* w = alloc<float>(C, off);
    float* b = alloc<float>(C, off);
    float* dout = alloc<float>(NC, off);
    fill(inp, NC, 2.0f, 3.0f);  // |mean| > std
    fill(w, C, 1.0f);
    fill(b, C, 1.0f);
    fill(dout, NC, 1.0f);
    std::vector<float> dinp0(NC), dw0(C), db0(C);
    fill(dinp0.data(), NC, 1.0f);
    fill(dw0.data(), C, 1.0f);
    fill(db0.data(), C, 1.0f);

    // f32 vs the CPU
    {
        std::vector<float> oc(NC), mc(N), rc(N), m(N), r(N);
        plw::cpu::layernorm_forward(oc.data(), mc.data(), rc.data(), inp, w, b, N, C);
        float* o = alloc<float>(NC, off);
        plw::cuda::layernorm_forward(o, m.data(), r.data(), inp, w, b, N, C);
        compare("ln f32 out", o, oc.data(), NC, 1e-5, 1e-5);
        compare("ln f32 mean", m.data(), mc.data(), N, 1e-5, 1e-6);
        compare("ln f32 rstd", r.data(), rc.data(), N, 1e-5, 0);
        float* o_nul = alloc<float>(NC, off);  // null mean/rstd (inference)
        plw::cuda::layernorm_forward(o_nul, nullptr, nullptr, inp, w, b, N, C);
        test::same_bits("ln f32 out (null stats)", o_nul, o, NC * 4);

        float* di = alloc<float>(NC, off);
        float* dw = alloc<float>(C, off);
        float* db = alloc<float>(C, off);
        std::memcpy(di, dinp0.data(), NC * 4);
        std::memcpy(dw, dw0.data(), C * 4);
        std::memcpy(db, db0.data(), C * 4);
        plw::cuda::layernorm_backward(di, dw, db, dout, inp, w, mc.data(), rc.data(), N, C);
        std::vector<float> dic(dinp0), dwc(dw0), dbc(db0);
        plw::cpu::layernorm_backward(dic.data(), dwc.data(), dbc.data(), dout, inp, w, mc.data(), rc.data(), N, C);
        compare("ln f32 dinp", di, dic.data(), NC, 1e-5, 1e-5);
        compare("ln f32 dweight", dw, dwc.data(), C, 1e-5, 1e-5 * std::sqrt(double(N)));
        compare("ln f32 dbias", db, dbc.data(), C, 1e-5, 1e-5 * std::sqrt(double(N)));
    }

    // bf16 activations (inputs rounded in place: the reference sees the same values)
    {
        bf16* inp_b = to_bf16(inp, NC, off);
        bf16* dout_b = to_bf16(dout, NC, off);
        bf16* dinp0_b = to_bf16(dinp0.data(), NC, off);
        std::vector<float> oc(NC), mc(N), rc(N);
        plw::cpu::layernorm_forward(oc.data(), mc.data(), rc.data(), inp, w, b, N, C);
        bf16* o = alloc<bf16>(NC, off);
        std::vector<float> m(N), r(N);
        plw::cuda::layernorm_forward(o, m.data(), r.data(), inp_b, w, b, N, C);
        note(compare_bf16("ln bf16 out", o, oc.data(), NC, 1e-5, 1e-5), rne_fraction(o, oc.data(), NC));
        compare("ln bf16 mean", m.data(), mc.data(), N, 1e-5, 1e-6);
        compare("ln bf16 rstd", r.data(), rc.data(), N, 1e-5, 0);

        bf16* di = alloc<bf16>(NC, off);
        float* dw = alloc<float>(C, off);
        float* db = alloc<float>(C, off);
        std::memcpy(di, dinp0_b, NC * 2);
        std::memcpy(dw, dw0.data(), C * 4);
        std::memcpy(db, db0.data(), C * 4);
        plw::cuda::layernorm_backward(di, dw, db, dout_b, inp_b, w, mc.data(), rc.data(), N, C);
        std::vector<float> dic(dinp0), dwc(dw0), dbc(db0);  // dinp0 holds the rounded values
        plw::cpu::layernorm_backward(dic.data(), dwc.data(), dbc.data(), dout, inp, w, mc.data(),
                                     rc.data(), N, C);
        note(compare_bf16("ln bf16 dinp", di, dic.data(), NC, 1e-5, 1e-5),
             rne_fraction(di, dic.data(), NC));
        compare("ln bf16 dweight", dw, dwc.data(), C, 1e-5, 1e-5 * std::sqrt(double(N)));
        compare("ln bf16 dbias", db, dbc.data(), C, 1e-5, 1e-5 * std::sqrt(double(N)));
        // deterministic
        bf16* di2 = alloc<bf16>(NC, off);
        float* dw2 = alloc<float>(C, off);
        float* db2 = alloc<float>(C, off);
        std::memcpy(di2, dinp0_b, NC * 2);
        std::memcpy(dw2, dw0.data(), C * 4);
        std::memcpy(db2, db0.data(), C * 4);
        plw::cuda::layernorm_backward(di2, dw2, db2, dout_b, inp_b, w, mc.data(), rc.data(), N, C);
        test::same_bits("ln bf16 dinp rerun", di2, di, NC * 2);
        test::same_bits("ln bf16 dweight rerun", dw2, dw, C * 4);
        test::same_bits("ln bf16 dbias rerun", db2, db, C * 4);
    }
    std::printf("layernorm N=%d C=%d off=%d done\n", N, C, off);
}

// ---------------------------------------------------------------- gelu
void test_gelu(size_t n, int off) {
    float* x = alloc<float>(n, off);
    fill(x, n, 3.0f);
    const float special[] = {0.f,  -0.f,   1e-20f, -1e-20f, -3.f,    -5.f,      -8.f,
                             -10.f, -12.f, -30.f,  5.f,     10.f,    100.f,     -100.f,
                             INFINITY, -INFINITY, NAN, 3e38f, -3e38f, 1e-40f};
    for (size_t i = 0; i < n && i < sizeof special / 4; i++) x[i] = special[i];
    float* g = alloc<float>(n, off);
    fill(g, n, 1.0f);
    std::vector<float> d0(n);
    fill(d0.data(), n, 1.0f);

    // f32 vs the CPU
    {
        std::vector<float> oc(n);
        plw::cpu::gelu_forward(oc.data(), x, n);
        float* o = alloc<float>(n, off);
        plw::cuda::gelu_forward(o, x, n);
        compare("gelu f32 fwd", o, oc.data(), n, 1e-5, 1e-30);
        float* ip = alloc<float>(n, off);
        std::memcpy(ip, x, n * 4);
        plw::cuda::gelu_forward(ip, ip, n);
        test::same_bits("gelu f32 in place", ip, o, n * 4);
        float* d = alloc<float>(n, off);
        std::memcpy(d, d0.data(), n * 4);
        plw::cuda::gelu_backward(d, x, g, n);
        std::vector<float> c(d0);
        plw::cpu::gelu_backward(c.data(), x, g, n);
        compare("gelu f32 bwd", d, c.data(), n, 1e-5, 1e-6);
    }
    // bf16
    {
        bf16* xb = to_bf16(x, n, off);
        bf16* gb = to_bf16(g, n, off);
        bf16* d0b = to_bf16(d0.data(), n, off);
        std::vector<float> oc(n);
        plw::cpu::gelu_forward(oc.data(), x, n);
        bf16* o = alloc<bf16>(n, off);
        plw::cuda::gelu_forward(o, xb, n);
        note(compare_bf16("gelu bf16 fwd", o, oc.data(), n, 1e-5, 1e-30), rne_fraction(o, oc.data(), n));
        bf16* ip = alloc<bf16>(n, off);
        std::memcpy(ip, xb, n * 2);
        plw::cuda::gelu_forward(ip, ip, n);
        test::same_bits("gelu bf16 in place", ip, o, n * 2);

        std::vector<float> dc(d0);
        plw::cpu::gelu_backward(dc.data(), x, g, n);
        bf16* d = alloc<bf16>(n, off);
        std::memcpy(d, d0b, n * 2);
        plw::cuda::gelu_backward(d, xb, gb, n);
        note(compare_bf16("gelu bf16 bwd", d, dc.data(), n, 1e-5, 1e-6), rne_fraction(d, dc.data(), n));
        // dinp aliasing dout: dinp = dinp + gelu'(x) * dinp
        std::vector<float> ac(d0);
        plw::cpu::gelu_backward(ac.data(), x, d0.data(), n);
        bf16* a = alloc<bf16>(n, off);
        std::memcpy(a, d0b, n * 2);
        plw::cuda::gelu_backward(a, xb, a, n);
        note(compare_bf16("gelu bf16 bwd dinp == dout", a, ac.data(), n, 1e-5, 1e-6),
             rne_fraction(a, ac.data(), n));
    }
    std::printf("gelu n=%zu off=%d done\n", n, off);
}

// ---------------------------------------------------------------- residual
void test_residual(size_t n, int off_a, int off_b) {
    float* a = alloc<float>(n, off_a);
    float* b = alloc<float>(n, off_b);
    float* g = alloc<float>(n, off_a);
    fill(a, n, 1.f);
    fill(b, n, 1.f);
    fill(g, n, 1.f);
    // f32: the same single addition as the CPU, so bit for bit
    {
        std::vector<float> ref(n);
        plw::cpu::residual_forward(ref.data(), a, b, n);
        float* o = alloc<float>(n, off_a);
        plw::cuda::residual_forward(o, a, b, n);
        test::same_bits("residual f32 fwd", o, ref.data(), n * 4);
        float* ip = alloc<float>(n, off_a);  // out == a
        std::memcpy(ip, a, n * 4);
        plw::cuda::residual_forward(ip, ip, b, n);
        test::same_bits("residual f32 in place", ip, ref.data(), n * 4);
        float* da = alloc<float>(n, off_a);
        float* db = alloc<float>(n, off_b);
        std::memcpy(da, a, n * 4);
        std::memcpy(db, b, n * 4);
        plw::cuda::residual_backward(da, db, g, n);
        std::vector<float> rda(a, a + n), rdb(b, b + n);
        plw::cpu::residual_backward(rda.data(), rdb.data(), g, n);
        test::same_bits("residual f32 bwd da", da, rda.data(), n * 4);
        test::same_bits("residual f32 bwd db", db, rdb.data(), n * 4);
        std::memcpy(da, a, n * 4);  // da == db
        plw::cuda::residual_backward(da, da, g, n);
        std::vector<float> rs(a, a + n);
        plw::cpu::residual_backward(rs.data(), rs.data(), g, n);
        test::same_bits("residual f32 bwd da == db", da, rs.data(), n * 4);
    }
    // bf16: the f32 sum is exact arithmetic shared with the host, so bit for bit
    {
        bf16* ab = to_bf16(a, n, off_a);
        bf16* bb = to_bf16(b, n, off_b);
        bf16* gb = to_bf16(g, n, off_a);
        std::vector<float> ref(n);
        plw::cpu::residual_forward(ref.data(), a, b, n);
        bf16* o = alloc<bf16>(n, off_a);
        plw::cuda::residual_forward(o, ab, bb, n);
        bf16_exact("residual bf16 fwd", o, ref.data(), n);
        bf16* ip = alloc<bf16>(n, off_a);  // out == a
        std::memcpy(ip, ab, n * 2);
        plw::cuda::residual_forward(ip, ip, bb, n);
        test::same_bits("residual bf16 in place", ip, o, n * 2);

        bf16* da = alloc<bf16>(n, off_a);
        bf16* db = alloc<bf16>(n, off_b);
        std::memcpy(da, ab, n * 2);
        std::memcpy(db, bb, n * 2);
        plw::cuda::residual_backward(da, db, gb, n);
        std::vector<float> rda(a, a + n), rdb(b, b + n);
        plw::cpu::residual_backward(rda.data(), rdb.data(), g, n);
        bf16_exact("residual bf16 bwd da", da, rda.data(), n);
        bf16_exact("residual bf16 bwd db", db, rdb.data(), n);
        // da == db: two += with a rounding after each
        bf16* s = alloc<bf16>(n, off_a);
        std::memcpy(s, ab, n * 2);
        plw::cuda::residual_backward(s, s, gb, n);
        std::vector<float> rs(n);
        for (size_t i = 0; i < n; i++)
            rs[i] = bf16_to_f32(f32_to_bf16(a[i] + g[i])) + g[i];
        bf16_exact("residual bf16 bwd da == db", s, rs.data(), n);
    }
    std::printf("residual n=%zu off=%d/%d done\n", n, off_a, off_b);
}

// ---------------------------------------------------------------- embedding
// with_pos = false: no position table (Llama): wpe, positions and dwpe are all nullptr.
void test_embedding(int N, int C, int V, int T, int off, bool many_repeats, bool with_pos = true) {
    float* wte = alloc<float>(size_t(V) * C, off);
    float* wpe = with_pos ? alloc<float>(size_t(T) * C, off) : nullptr;
    fill(wte, size_t(V) * C, 1.f);
    if (with_pos) fill(wpe, size_t(T) * C, 1.f);
    std::vector<int32_t> tok(N), pos(N);
    for (int n = 0; n < N; n++) {
        tok[n] = many_repeats ? int(test::rng() % 3) : int(test::rng() % V);
        pos[n] = n % T;
    }
    const int32_t* posp = with_pos ? pos.data() : nullptr;
    const size_t NC = size_t(N) * C;
    float* dout = alloc<float>(NC, off);
    fill(dout, NC, 1.f);
    std::vector<float> dwte0(size_t(V) * C), dwpe0(size_t(T) * C);
    fill(dwte0.data(), dwte0.size(), 1.f);
    fill(dwpe0.data(), dwpe0.size(), 1.f);
    // the GPU's dwpe: the real one, or (no table) nullptr, with p1 checked untouched below
    auto dwpe_of = [&](std::vector<float>& p) { return with_pos ? p.data() : nullptr; };
    // f32: the same sums in the same order as the CPU, so bit for bit
    {
        std::vector<float> ref(NC);
        plw::cpu::embedding_forward(ref.data(), tok.data(), posp, wte, wpe, N, C);
        float* x = alloc<float>(NC, off);
        plw::cuda::embedding_forward(x, tok.data(), posp, wte, wpe, N, C);
        test::same_bits("emb f32 fwd", x, ref.data(), NC * 4);
        std::vector<float> t1(dwte0), p1(dwpe0), t3(dwte0), p3(dwpe0);
        plw::cuda::embedding_backward(t1.data(), dwpe_of(p1), dout, tok.data(), posp, N, C);
        plw::cpu::embedding_backward(t3.data(), dwpe_of(p3), dout, tok.data(), posp, N, C);
        test::same_bits("emb f32 dwte", t1.data(), t3.data(), t1.size() * 4);
        test::same_bits("emb f32 dwpe", p1.data(), p3.data(), p1.size() * 4);
    }
    // bf16
    {
        std::vector<float> ref(NC);
        plw::cpu::embedding_forward(ref.data(), tok.data(), posp, wte, wpe, N, C);
        bf16* o = alloc<bf16>(NC, off);
        plw::cuda::embedding_forward(o, tok.data(), posp, wte, wpe, N, C);
        bf16_exact("emb bf16 fwd", o, ref.data(), NC);
        bf16* db = to_bf16(dout, NC, off);
        std::vector<float> t1(dwte0), p1(dwpe0), t3(dwte0), p3(dwpe0);
        plw::cuda::embedding_backward(t1.data(), dwpe_of(p1), db, tok.data(), posp, N, C);
        plw::cpu::embedding_backward(t3.data(), dwpe_of(p3), dout, tok.data(), posp, N, C);
        test::same_bits("emb bf16 dwte vs cpu", t1.data(), t3.data(), t1.size() * 4);
        test::same_bits("emb bf16 dwpe vs cpu", p1.data(), p3.data(), p1.size() * 4);
    }
    if (!with_pos) {  // exactly the wte rows, and dwpe (never passed) left as it was
        std::vector<float> rows(NC), p1(dwpe0), t1(dwte0);
        for (int n = 0; n < N; n++) std::memcpy(&rows[size_t(n) * C], wte + size_t(tok[n]) * C, size_t(C) * 4);
        float* x = alloc<float>(NC, off);
        plw::cuda::embedding_forward(x, tok.data(), nullptr, wte, nullptr, N, C);
        test::same_bits("emb f32 fwd without wpe == wte rows", x, rows.data(), NC * 4);
        plw::cuda::embedding_backward(t1.data(), nullptr, dout, tok.data(), nullptr, N, C);
        test::same_bits("emb dwpe untouched", p1.data(), dwpe0.data(), p1.size() * 4);
    }
    std::printf("embedding N=%d C=%d V=%d T=%d off=%d repeats=%d%s done\n", N, C, V, T, off,
                many_repeats, with_pos ? "" : " (no wpe)");
}

// ---------------------------------------------------------------- convert
float from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
void test_convert(int off_f, int off_b) {
    std::vector<uint32_t> u;
    // edge values: zeros, subnormals, normals' extremes, infinities, NaNs (quiet, signaling,
    // payload only in the low half), ties around each binade and at overflow
    const uint32_t edges[] = {0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x00008000,
                              0x00018000, 0x00007fff, 0x00008001, 0x007fffff, 0x807fffff,
                              0x00800000, 0x3f800000, 0x3f808000, 0x3f818000, 0x3f807fff,
                              0x3f808001, 0xbf808000, 0xbf818000, 0x7f7fffff, 0xff7fffff,
                              0x7f7f7fff, 0x7f7f8000, 0x7f7f8001, 0x7f7effff, 0x7f800000,
                              0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001,
                              0x7fbfffff, 0x7f80ffff, 0x7fff0000, 0x7fffffff, 0xffffffff};
    for (uint32_t e : edges) u.push_back(e);
    // every bf16 pattern with the low half a tie (0x8000), just below, just above, and zero
    for (uint32_t h = 0; h < 65536; h += 7) {
        for (uint32_t lo : {0x0000u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu}) u.push_back(h << 16 | lo);
    }
    std::uniform_int_distribution<uint32_t> bits;
    for (int i = 0; i < 20000; i++) u.push_back(bits(test::rng));
    u.push_back(0x3f808000);  // n % 8 != 0 tail
    const size_t n = u.size();
    float* src = alloc<float>(n, off_f);
    for (size_t i = 0; i < n; i++) src[i] = from_bits(u[i]);
    bf16* dst = alloc<bf16>(n, off_b);
    plw::cuda::convert(dst, src, n);
    int bad = 0;
    size_t first = 0;
    for (size_t i = 0; i < n; i++) {
        if (dst[i].bits != f32_to_bf16(src[i]).bits && bad++ == 0) first = i;
    }
    EXPECT(bad == 0, "convert f32->bf16 (off %d/%d): %d of %zu differ; first %08x -> %04x want %04x",
           off_f, off_b, bad, n, u[first], dst[first].bits, f32_to_bf16(src[first]).bits);
    // bf16 -> f32 over every bf16 pattern (NaNs included: exact bits)
    const size_t m = 65536 + 3;
    bf16* all = alloc<bf16>(m, off_b);
    for (size_t i = 0; i < m; i++) all[i].bits = uint16_t(i);
    float* back = alloc<float>(m, off_f);
    plw::cuda::convert(back, all, m);
    bad = 0;
    for (size_t i = 0; i < m; i++) {
        const float r = bf16_to_f32(all[i]);
        if (std::memcmp(&back[i], &r, 4) != 0 && bad++ == 0) first = i;
    }
    EXPECT(bad == 0, "convert bf16->f32 (off %d/%d): %d differ; first %04zx", off_f, off_b, bad,
           first);
    // round trip bf16 -> f32 -> bf16: identity except signaling NaNs, which come back quiet
    bf16* rt = alloc<bf16>(m, off_b);
    plw::cuda::convert(rt, back, m);
    bad = 0;
    for (size_t i = 0; i < m; i++) {
        const bool nan = std::isnan(back[i]);
        const uint16_t want = nan ? uint16_t(all[i].bits | 0x0040) : all[i].bits;
        if (rt[i].bits != want && bad++ == 0) first = i;
    }
    EXPECT(bad == 0, "convert round trip (off %d/%d): %d differ; first %04zx", off_f, off_b, bad,
           first);
    // short and empty
    for (size_t k : {size_t(0), size_t(1), size_t(7), size_t(9)}) {
        bf16* s = alloc<bf16>(k + 1, off_b);
        s[k].bits = 0xabcd;  // guard
        plw::cuda::convert(s, src, k);
        for (size_t i = 0; i < k; i++) EXPECT(s[i].bits == f32_to_bf16(src[i]).bits, "short k=%zu", k);
        EXPECT(s[k].bits == 0xabcd, "convert wrote past n=%zu", k);
    }
    std::printf("convert n=%zu off=%d/%d done\n", n, off_f, off_b);
}

// ---------------------------------------------------------------- id range check
void test_find_out_of_range() {
    std::vector<int32_t> ids(5000);
    for (size_t i = 0; i < ids.size(); i++) ids[i] = int32_t(i % 50);
    EXPECT(plw::cuda::find_out_of_range(ids.data(), int64_t(ids.size()), 50) == -1, "valid ids flagged");
    EXPECT(plw::cuda::find_out_of_range(ids.data(), 0, 50) == -1, "empty ids flagged");
    ids[4000] = -1;
    ids[4500] = 50;
    EXPECT(plw::cuda::find_out_of_range(ids.data(), int64_t(ids.size()), 50) == 4000, "first out-of-range id");
    ids[3] = 1 << 30;
    EXPECT(plw::cuda::find_out_of_range(ids.data(), int64_t(ids.size()), 50) == 3, "first out-of-range id");
    std::printf("find_out_of_range done\n");
}

}  // namespace

int main(int argc, char** argv) {
    if (test::selected(argc, argv, "convert")) {
        test_convert(0, 0);  // both 16-byte aligned: vector path
        test_convert(1, 0);  // f32 misaligned
        test_convert(0, 3);  // bf16 misaligned
        test_convert(4, 8);  // 16 bytes past: aligned again (vector path)
    }
    if (test::selected(argc, argv, "residual")) {
        test_residual(1, 0, 0);
        test_residual(8, 0, 0);
        test_residual(1003, 0, 0);  // tails: 3 (f32), 3 (bf16)
        test_residual(1005, 1, 1);  // misaligned
        test_residual(1005, 0, 2);  // only b misaligned
        test_residual(4100, 4, 0);  // f32 aligned, bf16 8 bytes off
    }
    if (test::selected(argc, argv, "gelu")) {
        test_gelu(1, 0);
        test_gelu(20, 0);
        test_gelu(1024, 0);
        test_gelu(1001, 1);
        test_gelu(1001, 4);  // f32 aligned; bf16 8 bytes off: scalar
    }
    if (test::selected(argc, argv, "embedding")) {
        test_embedding(37, 64, 50, 16, 0, false);  // f32 float4, bf16 x8
        test_embedding(37, 12, 50, 16, 0, false);  // f32 float4, bf16 scalar (C % 8 != 0)
        test_embedding(41, 13, 30, 7, 0, true);    // odd C: scalar; many repeated tokens
        test_embedding(40, 64, 30, 8, 1, true);    // misaligned: scalar
        test_embedding(37, 64, 50, 16, 0, false, false);  // no position table: vector paths
        test_embedding(41, 13, 30, 7, 0, true, false);    // no position table, odd C: scalar
        test_embedding(40, 64, 30, 8, 1, false, false);   // no position table, misaligned
        test_find_out_of_range();
    }
    if (test::selected(argc, argv, "layernorm")) {
        test_layernorm(1, 8, 0);
        test_layernorm(17, 64, 0);
        test_layernorm(20, 100, 0);   // f32 float4, bf16 scalar (100 % 8 != 0)
        test_layernorm(13, 37, 0);    // scalar for both
        test_layernorm(20, 64, 1);    // misaligned: scalar
        test_layernorm(20, 64, 4);    // f32 aligned, bf16 8 bytes off: scalar
        test_layernorm(2, 4096, 0);   // f32 ITEMS 2, bf16 ITEMS 1
        test_layernorm(1, 8192, 0);   // f32 ITEMS 4, bf16 ITEMS 2
        test_layernorm(1, 16384, 0);  // f32 ITEMS 8, bf16 ITEMS 4
        test_layernorm(3, 1027, 0);   // scalar, ITEMS 4 (1027 packs over 512 threads -> 3)
        test_layernorm(160, 24, 0);   // 5 chunks: two-stage column sums
        test_layernorm(2, 4001, 0);   // scalar, ITEMS 8
    }
    std::printf("bf16 vs reference: worst error / tolerance %.3f; smallest fraction equal to f32_to_bf16(ref): %.6f\n",
                worst_bf16, min_rne);
    return test::finish("test_elementwise");
}
