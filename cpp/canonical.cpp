// The canonical form of register programs (dead code removed, registers renamed in order of first
// use): the semantics are Program.canonical's (evoforge/programs/program.py), in C++ because a search
// hashes the canonical form of every child.
#include <cstdint>
#include <vector>

#include "evoforge/common.h"
#include "evoforge/interpreter.h"

namespace evoforge {
namespace interp {
namespace {

// A set of registers of all three types: bit (type offset + index).
class RegSet {
 public:
  RegSet(const Shape& s) : off_{0, s.n_scalar, s.n_scalar + s.n_vector}, bits_(s.n_scalar + s.n_vector + s.n_matrix) {}
  int64_t slot(char t, int64_t r) const { return off_[t == kScalar ? 0 : t == kVector ? 1 : 2] + r; }
  bool has(char t, int64_t r) const { return bits_[slot(t, r)]; }
  void add(char t, int64_t r) { bits_[slot(t, r)] = true; }
  void drop(char t, int64_t r) { bits_[slot(t, r)] = false; }
  bool operator==(const RegSet& o) const { return bits_ == o.bits_; }
  RegSet& operator|=(const RegSet& o) {
    for (size_t i = 0; i < bits_.size(); ++i) bits_[i] = bits_[i] || o.bits_[i];
    return *this;
  }

 private:
  int64_t off_[3];
  std::vector<bool> bits_;
};

// Backward liveness through one component: `live` goes in as the registers live at its end and comes
// out as those live at its start; keep[i] says whether instruction i can reach them.
void transfer(const int32_t* code, int64_t L, RegSet& live, std::vector<char>* keep) {
  if (keep) keep->assign(L, 0);
  for (int64_t i = L - 1; i >= 0; --i) {
    const int32_t* ins = code + 4 * i;
    const OpInfo& op = kOps[ins[0]];
    if (ins[0] == noop || !live.has(op.out, ins[1])) continue;  // every op overwrites all of its output
    if (keep) (*keep)[i] = 1;
    live.drop(op.out, ins[1]);
    if (op.in1 != kNone) live.add(op.in1, ins[2]);
    if (op.in2 != kNone) live.add(op.in2, ins[3]);
  }
}

RegSet minus(RegSet s, char t, int64_t r) {
  s.drop(t, r);
  return s;
}

}  // namespace

void canonical_programs(const int32_t* code, const double* imm, const int64_t* lengths, int64_t B, int64_t C,
                        const Shape& s, std::vector<int32_t>& code_out, std::vector<double>& imm_out,
                        int64_t* lengths_out) {
  EVOFORGE_CHECK(C == 1 || C == 3, "a program has 1 component (a function) or 3 (a learner), got " << C);
  EVOFORGE_CHECK(s.n_scalar >= 2, "canonical forms need n_scalar >= 2 (s0, s1), got " << s.n_scalar);
  EVOFORGE_CHECK(C == 1 || s.n_vector >= 1, "a learner needs n_vector >= 1 (v0)");
  int64_t offset = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int32_t* comp[3];
    int64_t len[3];
    for (int64_t c = 0; c < C; ++c) {
      len[c] = lengths[b * C + c];
      EVOFORGE_CHECK(len[c] >= 0, "component lengths must be >= 0");
      comp[c] = code + 4 * offset;
      offset += len[c];
    }
    Code whole;
    whole.code = comp[0];
    whole.P = 1;
    whole.L = offset - (comp[0] - code) / 4;
    check_code(whole, s, "program");

    std::vector<char> keep[3];
    if (C == 1) {
      RegSet live(s);
      live.add(kScalar, 1);
      transfer(comp[0], len[0], live, &keep[0]);
    } else {  // setup -> predict -> learn, predict -> predict and learn -> predict (see Program.canonical)
      RegSet pred_in(s), learn_in(s);
      for (;;) {
        RegSet pred_out = minus(learn_in, kScalar, 0);
        pred_out |= minus(pred_in, kVector, 0);
        pred_out.add(kScalar, 1);
        RegSet new_pred_in = pred_out;
        transfer(comp[1], len[1], new_pred_in, &keep[1]);
        RegSet new_learn_in = minus(new_pred_in, kVector, 0);
        transfer(comp[2], len[2], new_learn_in, &keep[2]);
        const bool done = new_pred_in == pred_in && new_learn_in == learn_in;
        pred_in = new_pred_in;
        learn_in = new_learn_in;
        if (done) break;  // the sets only grow, and are finite
      }
      RegSet setup_out = minus(pred_in, kVector, 0);
      transfer(comp[0], len[0], setup_out, &keep[0]);
    }

    // Renaming per type in order of first use, s0, s1 and v0 kept; -1: not yet named.
    std::vector<int64_t> names[3] = {std::vector<int64_t>(s.n_scalar, -1), std::vector<int64_t>(s.n_vector, -1),
                                     std::vector<int64_t>(s.n_matrix, -1)};
    int64_t next[3] = {2, 1, 0};
    names[0][0] = 0;
    names[0][1] = 1;
    if (s.n_vector) names[1][0] = 0;
    auto rename = [&](char t, int32_t r) -> int32_t {
      const int k = t == kScalar ? 0 : t == kVector ? 1 : 2;
      if (names[k][r] < 0) names[k][r] = next[k]++;
      return static_cast<int32_t>(names[k][r]);
    };
    for (int64_t c = 0; c < C; ++c) {
      int64_t kept = 0;
      const int64_t base = (comp[c] - code) / 4;
      for (int64_t i = 0; i < len[c]; ++i) {
        if (!keep[c][i]) continue;
        const int32_t* ins = comp[c] + 4 * i;
        const OpInfo& op = kOps[ins[0]];
        int32_t row[4] = {ins[0], 0, 0, 0};
        if (op.in1 != kNone) row[2] = rename(op.in1, ins[2]);
        if (op.in2 != kNone) row[3] = rename(op.in2, ins[3]);
        row[1] = rename(op.out, ins[1]);
        code_out.insert(code_out.end(), row, row + 4);
        const double x = op.imm ? imm[base + i] : 0.0;
        imm_out.push_back(ins[0] == v_get ? static_cast<double>(element_index(x, s.dim)) : x);
        ++kept;
      }
      lengths_out[b * C + c] = kept;
    }
  }
}

}  // namespace interp
}  // namespace evoforge
