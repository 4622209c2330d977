"""The optimized modules the notebooks swap in for their from-scratch versions."""

from mmcourse.nn.attention import MultiHeadAttention, key_padding_mask
from mmcourse.nn.audio import AudioEncoder, AudioFrontEnd, summarize_frames
from mmcourse.nn.contrastive import InfoNCE, info_nce, similarity
from mmcourse.nn.fusion import METHODS as FUSION_METHODS
from mmcourse.nn.fusion import make_fusion
from mmcourse.nn.image import ImageEncoder
from mmcourse.nn.lora import LoRALinear, apply_lora, lora_layers, merge_lora, unmerge_lora
from mmcourse.nn.multimodal import MultimodalClassifier, MultiTaskLoss
from mmcourse.nn.positional import PositionalEncoding, sinusoidal_encoding
from mmcourse.nn.sequence import SequenceEncoder
from mmcourse.nn.text import TextEncoder
from mmcourse.nn.transformer import TransformerEncoder, TransformerEncoderLayer, masked_mean
