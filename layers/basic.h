// The basic layer library in one include.
#pragma once
#include "layers/activations.h"
#include "layers/containers.h"
#include "layers/conv1d.h"
#include "layers/dropout.h"
#include "layers/embedding.h"
#include "layers/init.h"
#include "layers/linear.h"
#include "layers/module.h"
#include "layers/norm.h"
#include "layers/pooling.h"
