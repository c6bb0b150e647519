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
"""Registers what gin files may name. Imported by gin files and entry points.

Library modules stay free of gin; this is the one place that makes them
configurable (t5x's pattern of configuring at the edge).
"""

import gin

from richhf_jax import trainer
from richhf_jax.data import pipeline
from richhf_jax.models import config as config_lib
from richhf_jax.models import heatmap_head
from richhf_jax.models import rahf
from richhf_jax.models import score_head


def rahf_config(vit: str = 'tiny', t5: str = 'tiny',
                heatmap_head_preset: str = 'tiny',
                score_head_preset: str = 'tiny',
                variant: str = 'multihead',
                vit_overrides: dict | None = None,
                t5_overrides: dict | None = None,
                heatmap_head_overrides: dict | None = None,
                score_head_overrides: dict | None = None,
                **loss_weights) -> rahf.RAHFConfig:
  """Builds a RAHFConfig from preset names plus field overrides.

  Presets (the sizes) live in Python as data; gin picks them by name and
  overrides single fields, so every value has one owner.
  """
  return rahf.RAHFConfig(
      vit=config_lib.vit_config(vit, **(vit_overrides or {})),
      t5=config_lib.t5_config(t5, **(t5_overrides or {})),
      heatmap_head=heatmap_head.get_heatmap_head_config(
          heatmap_head_preset, **(heatmap_head_overrides or {})),
      score_head=score_head.get_score_head_config(
          score_head_preset, **(score_head_overrides or {})),
      variant=variant, **loss_weights)


gin.external_configurable(rahf_config, module='richhf_jax')
gin.external_configurable(trainer.TrainConfig, module='richhf_jax')
gin.external_configurable(pipeline.DataConfig, module='richhf_jax')
