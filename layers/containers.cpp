#include "layers/containers.h"

namespace ssm::nn {

Sequential::Sequential(std::vector<std::shared_ptr<Module>> modules) {
  for (auto& m : modules) push_back(std::move(m));
}

void Sequential::push_back(std::shared_ptr<Module> m) {
  SSM_CHECK(m != nullptr, "Sequential: null module");
  register_module(std::to_string(children().size()), std::move(m));
}

Variable Sequential::forward(const Variable& x) {
  Variable h = x;
  for (auto& [name, m] : children()) h = m->forward(h);
  return h;
}

Module& Sequential::operator[](size_t i) const {
  SSM_CHECK(i < children().size(), "Sequential: index ", i, " out of range (size ", children().size(), ")");
  return *children()[i].second;
}

void ModuleList::push_back(std::shared_ptr<Module> m) {
  SSM_CHECK(m != nullptr, "ModuleList: null module");
  register_module(std::to_string(children().size()), std::move(m));
}

Module& ModuleList::operator[](size_t i) const {
  SSM_CHECK(i < children().size(), "ModuleList: index ", i, " out of range (size ", children().size(), ")");
  return *children()[i].second;
}

}  // namespace ssm::nn
