// Choosing the next token from one row of logits (host), for every architecture.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "model.h"

namespace plw::engine {

// Greedy (temperature 0, ties to the lowest id), or temperature + top-k + top-p sampling with
// a uniform from the seeded 64-bit stream.
inline int32_t sample_token(const std::vector<float>& logits, const GenerateOptions& o, std::mt19937_64& rng) {
    const int V = static_cast<int>(logits.size());
    if (!(o.temperature > 0.0f)) {
        return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    }
    std::vector<int32_t> ids(V);
    for (int i = 0; i < V; i++) ids[i] = i;
    std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    int keep = o.top_k > 0 ? std::min(o.top_k, V) : V;
    std::vector<double> prob(keep);
    const double m = logits[ids[0]];
    double z = 0;
    for (int i = 0; i < keep; i++) z += prob[i] = std::exp((logits[ids[i]] - m) / o.temperature);
    if (o.top_p < 1.0f) {
        double cum = 0;
        int cut = keep;
        for (int i = 0; i < keep; i++) {
            cum += prob[i] / z;
            if (cum >= o.top_p) {
                cut = i + 1;
                break;
            }
        }
        keep = cut;
        z = 0;
        for (int i = 0; i < keep; i++) z += prob[i];
    }
    const double u = static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0) * z;
    double acc = 0;
    for (int i = 0; i < keep; i++) {
        acc += prob[i];
        if (u < acc) return ids[i];
    }
    return ids[keep - 1];
}

}  // namespace plw::engine
