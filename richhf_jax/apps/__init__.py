# Copyright 2026 The richhf_jax Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Uses of RAHF's predictions (paper Sec. 5).

`inpaint`: inpainting masks from the implausibility heatmap and choosing the
best inpainted candidate; `select`: picking fine-tuning images per prompt;
`reward`: a differentiable reward for guidance or generator fine-tuning.
"""

from richhf_jax.apps.inpaint import choose_best
from richhf_jax.apps.inpaint import inpaint_mask
