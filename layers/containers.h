// Containers. Children are named "0", "1", ... so parameters read "layers.3.mixer.weight".
//   Sequential: forward chains the children's forward(x).
//   ModuleList: holds children for a parent that calls them itself.
#pragma once
#include <memory>
#include <vector>

#include "layers/module.h"

namespace ssm::nn {

class Sequential : public Module {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<std::shared_ptr<Module>> modules);
  void push_back(std::shared_ptr<Module> m);
  Variable forward(const Variable& x) override;
  size_t size() const { return children().size(); }
  Module& operator[](size_t i) const;
};

class ModuleList : public Module {
 public:
  ModuleList() = default;
  void push_back(std::shared_ptr<Module> m);
  size_t size() const { return children().size(); }
  Module& operator[](size_t i) const;
  template <typename M>
  M& at(size_t i) const {
    return dynamic_cast<M&>((*this)[i]);
  }
};

}  // namespace ssm::nn
