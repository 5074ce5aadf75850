"""Word tables of the query language: phrases and their tags, colour / size words, nouns, synonyms, lemmas.

Data, not logic: the tagger (normalize.py) turns text into tagged tokens with these tables, the grammar
(parser.py) reads the tags, and the label matcher (labels.py) uses the noun tables. Phrases are lower case and
space-separated; the tagger matches the longest phrase first, so "to the left of" wins over "to" and "left".
"""
from __future__ import annotations

from ..attributes import COLOR_NAMES

# --------------------------------------------------------------------------------------------- spatial words
# Relation phrases -> predicates of g2vlm_core.predicates (several: the best-scoring one counts).
RELATIONS: dict[str, tuple[str, ...]] = {
    "on": ("on",), "on top of": ("on",), "onto": ("on",), "upon": ("on",), "atop": ("on",), "on to": ("on",),
    "on the top of": ("on",), "at the top of": ("on",), "over": ("above",), "above": ("above",),
    "under": ("under", "below"), "underneath": ("under", "below"), "beneath": ("under", "below"),
    "below": ("below",), "under neath": ("under", "below"),
    "left of": ("left_of",), "to the left of": ("left_of",), "on the left of": ("left_of",),
    "on the left side of": ("left_of",), "to the left side of": ("left_of",), "at the left of": ("left_of",),
    "left to": ("left_of",), "leftward of": ("left_of",),
    "right of": ("right_of",), "to the right of": ("right_of",), "on the right of": ("right_of",),
    "on the right side of": ("right_of",), "to the right side of": ("right_of",), "at the right of": ("right_of",),
    "right to": ("right_of",), "rightward of": ("right_of",),
    "in front of": ("in_front_of",), "ahead of": ("in_front_of",), "before": ("in_front_of",),
    "at the front of": ("in_front_of",), "in the front of": ("in_front_of",),
    "behind": ("behind",), "in back of": ("behind",), "at the back of": ("behind",), "back of": ("behind",),
    "in the back of": ("behind",), "at the rear of": ("behind",), "to the rear of": ("behind",),
    "near": ("near",), "near to": ("near",), "nearby": ("near",), "next to": ("near",), "beside": ("near",),
    "besides": ("near",), "close to": ("near",), "close by": ("near",), "by": ("near",), "alongside": ("near",),
    "adjacent to": ("near",), "around": ("near",), "by the side of": ("near",), "at the side of": ("near",),
    "in the vicinity of": ("near",), "against": ("near",),
    # "the chair at the desk", "the laptop at the desk": beside it or resting on it
    "at": ("near", "on"),
    # "the mug off the desk", "take the book off of the shelf": what it is taken from, resting on or inside it
    "off": ("on", "inside"), "off of": ("on", "inside"),
    "in": ("inside",), "inside": ("inside",), "within": ("inside",), "inside of": ("inside",), "into": ("inside",),
    # "the table with the lamp": the lamp rests on it or stands by it
    "with": ("under", "near"), "holding": ("under", "near"), "carrying": ("under", "near"),
    "that has": ("under", "near"), "which has": ("under", "near"), "having": ("under", "near"),
}
# The association a possessive, a telegraphic juxtaposition or "from" implies ("the cabinet's box", "red mug,
# shelf", "the book from the cabinet"): resting on, inside or beside it.
ASSOCIATION = ("on", "inside", "near")
SUPPORT = ("on", "inside")  # the stronger association: resting on or inside it
# Adjectives before a noun that name a relation to the possessor ("the cabinet's neighbouring box").
RELATION_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "neighbouring": ("near",), "neighboring": ("near",), "adjacent": ("near",), "nearby": ("near",),
    "next": ("near",), "neighbouring to": ("near",), "adjacent to": ("near",),
}

# Superlatives -> (measure, direction). Measures: dist (to an anchor or the viewer), volume, height (box z
# size), width (largest horizontal size), z (centre height), right (along the viewer's right), front (along the
# viewer's viewing direction: the nearest first).
SUPERLATIVES: dict[str, tuple[str, str]] = {
    "nearest": ("dist", "min"), "closest": ("dist", "min"), "nearer": ("dist", "min"), "closer": ("dist", "min"),
    "most near": ("dist", "min"), "most close": ("dist", "min"),
    "farthest": ("dist", "max"), "furthest": ("dist", "max"), "farther": ("dist", "max"),
    "further": ("dist", "max"), "most distant": ("dist", "max"), "farthest away": ("dist", "max"),
    "furthest away": ("dist", "max"),
    "biggest": ("volume", "max"), "largest": ("volume", "max"), "bigger": ("volume", "max"),
    "larger": ("volume", "max"), "hugest": ("volume", "max"),
    "smallest": ("volume", "min"), "tiniest": ("volume", "min"), "littlest": ("volume", "min"),
    "smaller": ("volume", "min"),
    "tallest": ("height", "max"), "taller": ("height", "max"), "shortest": ("height", "min"),
    "shorter": ("height", "min"),
    "widest": ("width", "max"), "longest": ("width", "max"), "wider": ("width", "max"),
    "narrowest": ("width", "min"), "thinnest": ("width", "min"),
    "highest": ("z", "max"), "topmost": ("z", "max"), "uppermost": ("z", "max"), "top most": ("z", "max"),
    "lowest": ("z", "min"), "bottommost": ("z", "min"), "bottom most": ("z", "min"),
    # relative words with no size class: "the short lamp" is the shortest of the lamps asked about
    "tall": ("height", "max"), "short": ("height", "min"), "wide": ("width", "max"), "narrow": ("width", "min"),
    "leftmost": ("right", "min"), "left most": ("right", "min"), "furthest left": ("right", "min"),
    "farthest left": ("right", "min"), "most left": ("right", "min"), "far left": ("right", "min"),
    "rightmost": ("right", "max"), "right most": ("right", "max"), "furthest right": ("right", "max"),
    "farthest right": ("right", "max"), "most right": ("right", "max"), "far right": ("right", "max"),
    "longer": ("width", "max"), "higher": ("z", "max"), "lower": ("z", "min"),
    "frontmost": ("front", "min"), "front most": ("front", "min"), "foremost": ("front", "min"),
    "backmost": ("front", "max"), "rearmost": ("front", "max"), "hindmost": ("front", "max"),
}
# Sides: "the left chair", "the chair on the left", "the second chair from the left"; a side names an end of
# a view axis (the measure and direction of a superlative), "middle" the median.
SIDES: dict[str, tuple[str, str]] = {
    "left": ("right", "min"), "right": ("right", "max"), "front": ("front", "min"), "back": ("front", "max"),
    "rear": ("front", "max"), "middle": ("right", "mid"), "center": ("right", "mid"), "centre": ("right", "mid"),
    "top": ("z", "max"), "bottom": ("z", "min"),
}
SIDE_POST = ("on the {}", "to the {}", "at the {}", "in the {}", "on the {} side", "on the {} hand side",
             "on the {}-hand side", "to the {} side", "at the {} end", "in the {}")
ORDINALS: dict[str, int] = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4,
                            "4th": 4, "fifth": 5, "5th": 5, "sixth": 6, "6th": 6, "seventh": 7, "7th": 7,
                            "eighth": 8, "8th": 8, "ninth": 9, "9th": 9, "tenth": 10, "10th": 10, "last": -1,
                            "second last": -2, "second to last": -2, "penultimate": -2}

# --------------------------------------------------------------------------------------------- attributes
COLOR_WORDS: dict[str, str] = {c: c for c in COLOR_NAMES}
COLOR_WORDS.update({
    "grey": "gray", "silver": "gray", "violet": "purple", "lilac": "purple", "lavender": "purple",
    "magenta": "pink", "golden": "yellow", "gold": "yellow", "tan": "brown", "beige": "brown",
    "wooden": "brown", "navy": "blue", "teal": "blue", "cyan": "blue", "turquoise": "blue", "azure": "blue",
    "maroon": "red", "crimson": "red", "scarlet": "red", "burgundy": "red", "lime": "green", "olive": "green",
    "ivory": "white", "cream": "white", "reddish": "red", "bluish": "blue", "greenish": "green",
    "yellowish": "yellow", "greyish": "gray", "grayish": "gray", "brownish": "brown", "pinkish": "pink",
    "purplish": "purple", "orangish": "orange", "whitish": "white", "blackish": "black",
})
# Shade words before a colour word ("dark red", "light-blue", "off-white", "jet black"): the colour they shade.
SHADES = ("light", "dark", "pale", "bright", "deep", "hot", "jet", "off", "pastel", "vivid", "dull", "soft", "royal",
          "sky", "baby", "navy", "forest", "lime", "olive", "blood", "cherry", "steel", "slate", "charcoal", "ash",
          "snow", "pure", "brilliant", "medium", "very light", "very dark")
COLOR_NOUNS = ("colour", "color", "colours", "colors", "coloured", "colored", "hue", "shade")
SIZE_WORDS: dict[str, str] = {
    "small": "small", "little": "small", "tiny": "small", "mini": "small", "smallish": "small",
    "medium": "medium", "medium sized": "medium", "mid sized": "medium", "midsized": "medium",
    "average sized": "medium", "large": "large", "big": "large", "huge": "large", "giant": "large",
    "enormous": "large", "large sized": "large", "small sized": "small", "massive": "large",
}

# --------------------------------------------------------------------------------------------- question frames
# Phrase -> tag (value is the phrase). Tags: see parser.py's grammar.
FRAMES: dict[str, str] = {
    "how many": "COUNT", "count": "COUNT", "count of": "COUNT", "number of": "COUNT", "the number of": "COUNT",
    "total number of": "COUNT", "the total number of": "COUNT", "the count of": "COUNT", "how much": "COUNT",
    "what number of": "COUNT", "tally": "COUNT",
    "is there": "THEREIS", "are there": "THEREIS", "is there any": "THEREIS", "are there any": "THEREIS",
    "there is": "THEREIS", "there are": "THEREIS", "is there an": "THEREIS", "exists": "THEREIS",
    "do you see": "SEE", "can you see": "SEE", "do you have": "SEE", "have you seen": "SEE",
    "did you see": "SEE", "could you see": "SEE", "do we have": "SEE", "is anything": "THEREIS",
    "are any": "THEREIS", "do you notice": "SEE", "does the map have": "SEE", "does the map contain": "SEE",
    "does the room have": "SEE", "does the scene contain": "SEE", "is a": "ISA", "is an": "ISA",
    "did you spot": "SEE", "have you spotted": "SEE", "did you notice": "SEE", "have you noticed": "SEE",
    "did you find": "SEE", "have you found": "SEE", "did you put": "SEE", "can i see": "SEE", "can we see": "SEE",
    "did you last see": "SEE", "did i leave": "SEE", "did we leave": "SEE", "have i left": "SEE",
    "did i put": "SEE", "did we put": "SEE", "did i place": "SEE", "did i drop": "SEE", "did i last see": "SEE",
    "did i see": "SEE", "did you leave": "SEE", "have you put": "SEE", "did someone leave": "SEE",
    # partitives: "of the chairs, which is closest to the laptop?", "among the boxes, which is the smallest?"
    "among": "AMONG", "amongst": "AMONG", "out of": "AMONG", "out of all": "AMONG",
    "from among": "AMONG",
    "where": "WHERE", "where can i find": "WHERE", "where do i find": "WHERE", "where would i find": "WHERE",
    "where could i find": "WHERE", "where exactly": "WHERE", "in which place": "WHERE", "in what place": "WHERE",
    "at which location": "WHERE", "at what location": "WHERE", "in which spot": "WHERE", "in what spot": "WHERE",
    "where might": "WHERE", "where would": "WHERE", "where could": "WHERE", "where will": "WHERE",
    "whereabouts": "WHERE", "where about": "WHERE",
    "location of": "LOCATION", "the location of": "LOCATION", "position of": "LOCATION",
    "the position of": "LOCATION", "coordinates of": "LOCATION", "the coordinates of": "LOCATION",
    "what": "WH", "which": "WH", "which one": "WH", "what kind of": "WH", "tell me what": "WH",
    "how big": "HOWBIG", "how large": "HOWBIG", "how huge": "HOWBIG", "how small": "HOWBIG",
    "what size": "SIZEQ", "the size of": "SIZEOF", "size of": "SIZEOF", "the dimensions of": "SIZEOF",
    "dimensions of": "SIZEOF", "how tall": "HOWTALL", "how high": "HOWTALL", "the height of": "HEIGHTOF",
    "height of": "HEIGHTOF", "how wide": "HOWWIDE", "how long": "HOWWIDE", "the width of": "WIDTHOF",
    "width of": "WIDTHOF", "the length of": "WIDTHOF", "length of": "WIDTHOF",
    "how far": "HOWFAR", "how far away": "HOWFAR", "how many meters": "HOWFAR", "how many metres": "HOWFAR",
    "how many feet": "HOWFAR", "how many steps": "HOWFAR", "how distant": "HOWFAR", "how close": "HOWFAR",
    "how far apart": "HOWFARAPART", "how far away from each other": "HOWFARAPART",
    "distance": "DISTANCE", "the distance": "DISTANCE", "distance between": "DISTBETWEEN",
    "the distance between": "DISTBETWEEN", "distance from": "DISTFROM", "the distance from": "DISTFROM",
    "distance to": "DISTTO", "the distance to": "DISTTO", "between": "BETWEEN", "in between": "BETWEEN",
    "apart": "APART",
    "list": "LIST", "list all": "LIST", "name": "LIST", "enumerate": "LIST", "what are all": "LIST",
    "what are the things": "LIST", "show all": "LIST", "give me a list of": "LIST", "list every": "LIST",
}
# Request wrappers around a query; dropped wherever they stand ("could you", "I need", "tell me").
COMMANDS = (
    "tell me", "i need", "i want", "i would like", "i am looking for", "i am searching for", "we need",
    "help me find", "help me locate", "can you tell me", "could you tell me", "would you tell me", "do you know",
    "please tell me", "i would like to know", "i wonder", "i want to know", "let me know", "tell me about",
    "we want", "i am after", "can you", "could you", "would you", "will you", "can u", "pls", "plz",
    "i need you to", "i want you to", "i would like you to", "we need you to", "i am trying to find",
    "i have to find", "i must find", "i would like to", "i want to", "i need to", "let us", "you should",
    "you need to", "you can", "you could", "you would", "you will", "would you say", "do you think",
    "do you reckon", "would you guess", "can i ask you to", "could i ask you to", "may i ask you to",
    "i would appreciate it if you", "i would really appreciate it if you", "it would be great if you",
    "it would be nice if you", "would it be possible to", "is it possible to", "i was hoping you could",
    "i am hoping you could", "i would love it if you",
)
# Imperative verbs of a robot's instructions ("take me to", "head over to", "switch on", "grab"): at the start
# of a query (before any other meaningful word) such a word is a verb, not a noun ("switch", "head", "point"),
# unless the map has it as a label. The verb, its object "me" and its particles ("over to", "towards", "next
# to") form the command prefix of the grammar; the object described after it is the target.
VERBS = (
    "find", "locate", "show", "get", "grab", "fetch", "bring", "take", "pick", "give", "hand", "carry", "move",
    "go", "head", "walk", "drive", "navigate", "travel", "proceed", "come", "return", "turn", "face", "rotate",
    "look", "point", "aim", "approach", "reach", "visit", "check", "inspect", "examine", "identify", "select",
    "detect", "spot", "search", "seek", "track", "follow", "touch", "push", "pull", "lift", "hold", "open",
    "close", "switch", "clean", "wipe", "park", "roll", "steer", "fly", "run", "hurry", "pass", "scan",
    "observe", "watch", "highlight", "mark", "target", "retrieve", "collect", "deliver", "guide", "lead",
)
# Particles and adverbs that follow such a verb before its object ("head over to", "look up at", "come back to",
# "turn towards"); prepositions that are relations ("next to", "behind", "on") are read as relations there.
PARTICLES = ("up", "down", "over", "off", "out", "back", "around", "round", "across", "along", "away", "towards",
             "toward", "at", "for", "straight", "forward", "forwards", "closer", "nearer", "directly", "yourself",
             "itself")
FILLER = {
    "please", "thanks", "thank", "kindly", "uh", "um", "umm", "er", "erm", "hmm", "hey", "hi", "hello there", "ok",
    "okay", "robot", "just", "hello", "hiya", "yo", "actually", "exactly", "currently", "now", "right now", "again",
    "also", "thank you", "cheers", "oh", "well", "so", "sitting", "standing", "lying", "laying", "resting",
    "placed", "located", "positioned", "situated", "kept", "stored", "sits", "stands", "lies", "rests", "sit",
    "stand", "lie", "rest", "put", "set", "found", "seen", "visible", "currently visible", "being", "been",
    "in total", "altogether", "in all", "overall", "at all", "for me", "for us", "yet", "still", "quickly",
    "here please", "that you can see", "you can see", "can be seen", "that i can see", "there please", "mounted",
    "hanging", "hung",
    # discourse markers: "is there like, a bottle", "so, um, how many", "hmm, basically I need the vase, I guess"
    "like", "you know", "i mean", "basically", "kind of", "sort of", "i guess", "i think", "i suppose", "maybe",
    "perhaps", "anyway", "anyways", "then", "uhh", "uhm", "ummm", "hmmm", "ah", "ahh", "eh", "hm", "mhm",
    "alright", "literally", "honestly", "quick question", "real quick", "by the way", "btw", "also", "okay so",
    "let me see", "let us see", "lemme see", "you see",
    # politeness clauses around a request
    "if it is not too much trouble", "if it is no trouble", "if it is not a problem", "if you do not mind",
    "if you would", "if you could", "if you can", "if possible", "if you please", "when you get a chance",
    "when you can", "would you be so kind as to", "be so kind as to", "would you mind", "do you mind",
    "i was wondering if", "i wonder if", "do me a favour and", "do me a favor and", "for a second",
    "excuse me", "pardon me", "sorry to bother you", "sorry to interrupt", "sorry", "thanks in advance",
    "thank you in advance", "in advance", "many thanks", "much appreciated", "thank you very much",
    "thanks a lot", "if that is ok", "if that is okay", "if you get a chance", "at your convenience",
}
# Rooms and the map itself: "in the kitchen", "in this room" add nothing to a query over one map.
ROOM_WORDS = ("room", "kitchen", "scene", "map", "house", "apartment", "flat", "office", "space", "area",
              "environment", "building", "home", "living room", "bedroom", "bathroom", "dining room", "hallway",
              "place", "world", "whole room", "entire room", "lab", "laboratory", "workspace")
ROOM_PREPOSITIONS = ("in the", "in this", "in my", "in our", "inside the", "within the", "around the",
                     "in here", "of the", "throughout the", "across the")
VIEWER = ("me", "myself", "us", "you", "yourself", "i", "we", "my position", "your position", "the current position",
          "where i am", "where you are", "this position")
# The viewer named as a thing ("closest to the robot", "how far from the camera"): only after "to" / "from",
# so that "the robot vacuum" stays an object.
VIEWER_THINGS = ("the robot", "the camera", "the viewer", "the sensor", "the observer", "the robot's position",
                 "the camera position")
# Pronouns that refer back to the head noun of their phrase ("the cupboard with the vase on it").
PRONOUNS = ("it", "them")

# --------------------------------------------------------------------------------------------- grammar words
DETERMINERS = ("the", "a", "an", "this", "these", "those", "my", "your", "its", "our", "some", "another")
QUANTIFIERS = ("every", "all", "each", "all the", "all of the", "each of the", "every single", "both")
ANY_WORDS = ("any", "any of the")
# modals too: "where might the bowl be", "where would the remote be" ("can" is also a noun, so not here)
BE = ("is", "are", "was", "were", "be", "am", "does", "do", "did", "stands", "might", "would", "could", "should",
      "will", "may", "must")
NEGATIONS = ("not", "no", "never", "isn't", "aren't", "n't", "doesn't", "don't", "non", "none")
EXCEPT = ("other than", "except", "except for", "but", "but not", "apart from", "aside from", "excluding",
          "not including", "save for", "instead of", "rather than", "different from", "besides the")
THAT = ("that", "which", "who", "whose", "that is", "which is")
ONE = ("one", "ones")
NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
                "eleven": 11, "twelve": 12, "a couple of": 2, "a pair of": 2, "a dozen": 12}
# Quantity comparisons of existence questions: "are there more than two chairs?", "do we have at least 3 cups?"
QUANTITY = {"more than": "gt", "over": "gt", "at least": "ge", "no fewer than": "ge", "no less than": "ge",
            "fewer than": "lt", "less than": "lt", "under": "lt", "at most": "le", "no more than": "le",
            "exactly": "eq", "precisely": "eq"}
THAN = ("than", "than to", "compared to", "compared with")  # comparatives: "bigger than the box"
HAVE = ("have", "has", "contain", "contains", "hold", "holds")  # "does the desk have a mug on it?"
INTENSIFIERS = ("very", "really", "quite")  # dropped before phrases are matched: "at the very back"
ANY_OBJECT = ("object", "objects", "thing", "things", "item", "items", "stuff", "something", "anything",
              "everything", "entity", "entities", "element", "elements", "one thing")

CONTRACTIONS = {
    "what's": "what is", "whats": "what is", "where's": "where is", "wheres": "where is", "that's": "that is",
    "thats": "that is", "it's": "it is", "there's": "there is", "theres": "there is", "here's": "here is",
    "isn't": "is not", "isnt": "is not", "aren't": "are not", "arent": "are not", "wasn't": "was not",
    "weren't": "were not", "doesn't": "does not", "doesnt": "does not", "don't": "do not", "dont": "do not",
    "didn't": "did not", "can't": "can not", "cant": "can not", "cannot": "can not", "won't": "will not",
    "i'm": "i am", "im": "i am", "i'd": "i would", "i'll": "i will", "i've": "i have", "you're": "you are",
    "who's": "who is", "how's": "how is", "which's": "which is", "we're": "we are", "they're": "they are",
    "let's": "let us", "ain't": "is not", "hasn't": "has not", "haven't": "have not", "couldn't": "could not",
    "wouldn't": "would not", "shouldn't": "should not", "what're": "what are", "where're": "where are",
    "there're": "there are", "u": "you", "ur": "your", "r": "are", "wat": "what", "pls": "please",
    "plz": "please", "thx": "thanks", "colour's": "colour is", "color's": "color is",
}

# --------------------------------------------------------------------------------------------- nouns
STRUCTURE_LABELS = ("floor", "wall", "ceiling", "counter")
SYNTH_LABELS = ("table", "chair", "sofa", "bed", "shelf", "cabinet", "desk", "lamp", "plant", "box", "monitor",
                "laptop", "mug", "bottle", "book", "bowl", "vase")
COCO_LABELS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
# Everyday objects beyond the recognizers' vocabularies (ImageNet refinements, household things): known words,
# so "how many pianos" is 0 rather than "I do not know that word".
HOUSEHOLD_NOUNS = (
    "coffee mug", "teapot", "kettle", "monitor", "printer", "bookcase", "pillow", "cushion", "piano",
    "television", "screen", "fridge", "freezer", "stove", "cooker", "dishwasher", "washing machine", "dryer",
    "plate", "dish", "glass", "jar", "can", "pot", "pan", "tray", "basket", "bin", "trash can", "bucket",
    "towel", "curtain", "blanket", "rug", "carpet", "mat", "mirror", "picture", "painting", "poster", "frame",
    "door", "window", "drawer", "cupboard", "wardrobe", "closet", "dresser", "nightstand", "stool", "armchair",
    "bookshelf", "shelving", "rack", "hanger", "hook", "fan", "heater", "radiator", "air conditioner",
    "speaker", "headphones", "camera", "tablet", "phone", "computer", "notebook", "pen", "pencil", "paper",
    "folder", "binder", "stapler", "calculator", "charger", "cable", "plug", "socket", "switch", "light",
    "bulb", "candle", "toy", "ball", "doll", "shoe", "boot", "sock", "hat", "cap", "coat", "jacket", "shirt",
    "bag", "purse", "wallet", "key", "keys", "umbrella", "helmet", "glove", "bicycle", "scooter", "tool",
    "hammer", "screwdriver", "wrench", "drill", "ladder", "box", "carton", "crate", "package", "parcel",
    "envelope", "letter", "magazine", "newspaper", "flower", "flowers", "tree", "plant pot", "flowerpot",
    "houseplant", "cactus", "fruit", "vegetable", "bread", "water", "milk", "juice", "wine", "beer", "soda",
    "cereal", "sugar", "salt", "spice", "bottle opener", "corkscrew", "cutting board", "ladle", "spatula",
    "whisk", "blender", "mixer", "coffee maker", "coffee machine", "toaster oven", "rice cooker", "kitchen",
    "sponge", "soap", "detergent", "shampoo", "toilet paper", "tissue", "tissues", "napkin", "trash",
    "garbage", "recycling", "bath", "bathtub", "shower", "faucet", "tap", "basin", "counter", "countertop",
    "worktop", "island", "table", "desk", "chair", "seat", "sofa", "loveseat", "ottoman", "footstool",
    "bench", "cabinet", "shelf", "lamp", "robot vacuum", "vacuum", "vacuum cleaner", "mop", "broom", "iron",
    "ironing board", "sewing machine", "router", "modem", "console", "controller", "game console",
    "projector", "whiteboard", "blackboard", "board", "sign", "clock", "watch", "alarm", "smoke detector",
    "thermostat", "outlet", "pipe", "column", "pillar", "beam", "stairs", "staircase", "step", "railing",
    "gate", "fence", "wall", "floor", "ceiling", "roof", "room", "corner", "doorway", "hallway", "person",
    "man", "woman", "child", "kid", "baby", "human", "people", "pet", "animal", "dog", "cat", "fish",
    "aquarium", "cage", "plant", "vase", "bowl", "cup", "mug", "teacup", "saucer", "kettle", "thermos",
    "flask", "container", "tupperware", "lunchbox", "toolbox", "suitcase", "luggage", "backpack", "briefcase",
    "file", "document", "map", "globe", "trophy", "statue", "sculpture", "figurine", "ornament", "decoration",
    "guitar", "violin", "drum", "keyboard", "mouse", "remote", "remote control", "mattress", "crib", "cot",
    "hammock", "tent", "printer", "scanner", "shredder", "microwave", "oven", "refrigerator", "sink",
    "radio", "telephone", "smartphone", "mobile", "mobile phone", "cellphone", "laptop", "notebook computer",
    "desktop", "pc", "tv", "monitor", "display", "screen", "desk lamp", "floor lamp", "table lamp",
    "coffee table", "side table", "end table", "kitchen table", "dining chair", "office chair", "bar stool",
    "high chair", "bunk bed", "sofa bed", "chest", "chest of drawers", "sideboard", "buffet", "hutch",
    "pantry", "fireplace", "chimney", "vent", "duct", "light switch", "power strip", "extension cord",
    "elephant", "giraffe", "zebra", "horse", "cow", "sheep", "bear", "bird", "car", "truck", "bus", "train",
    "boat", "airplane", "motorcycle", "bike", "stuffed animal", "teddy", "pizza", "cake", "banana", "apple",
)

# Words for the same kind of thing (singular, lower case). A noun and a label in one group match (score
# LabelMatcher.SYNONYM); the first word of a group is how answers name it when they need one.
SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    ("sofa", "couch", "settee", "loveseat", "love seat", "divan"),
    ("tv", "television", "telly", "tv set", "tv monitor", "television set", "flat screen", "flatscreen"),
    ("monitor", "screen", "display", "computer monitor", "computer screen", "tv", "television"),
    ("cup", "mug", "coffee mug", "coffee cup", "teacup", "tea cup", "beaker"),
    ("refrigerator", "fridge", "freezer", "fridge freezer", "icebox"),
    ("cell phone", "phone", "mobile phone", "mobile", "cellphone", "smartphone", "smart phone", "telephone",
     "iphone"),
    ("laptop", "notebook computer", "laptop computer", "computer", "macbook", "notebook pc"),
    ("potted plant", "plant", "houseplant", "house plant", "flowerpot", "flower pot", "pot plant",
     "plant pot", "potted flower", "flower", "flowers"),
    ("shelf", "bookcase", "bookshelf", "book shelf", "shelving", "shelving unit", "shelves", "rack"),
    ("cabinet", "cupboard", "dresser", "chest of drawers", "sideboard", "wardrobe", "closet", "nightstand",
     "night stand", "bedside table", "drawer", "drawers", "locker", "filing cabinet"),
    ("dining table", "table", "kitchen table", "dinner table", "dining room table"),
    ("chair", "stool", "armchair", "arm chair", "office chair", "dining chair", "desk chair"),
    ("lamp", "light", "floor lamp", "table lamp", "desk lamp", "bedside lamp", "reading lamp", "lantern"),
    ("box", "carton", "crate", "package", "cardboard box", "parcel", "storage box"),
    ("bottle", "water bottle", "flask", "wine bottle"),
    ("bowl", "dish"),
    ("vase", "flower vase"),
    ("bed", "mattress", "bunk", "cot"),
    ("sink", "basin", "washbasin", "wash basin", "kitchen sink", "faucet", "tap"),
    ("microwave", "microwave oven"),
    ("oven", "stove", "cooker", "range", "cooktop"),
    ("counter", "countertop", "counter top", "worktop", "work top", "kitchen counter", "work surface"),
    ("floor", "ground", "flooring"),
    ("robot vacuum", "roomba", "robotic vacuum", "vacuum robot", "robot vacuum cleaner", "vacuum cleaner"),
    ("remote", "remote control", "tv remote", "clicker"),
    ("mouse", "computer mouse"),
    ("keyboard", "computer keyboard"),
    ("person", "people", "human", "man", "woman", "child", "kid", "someone", "somebody"),
    ("trash can", "bin", "garbage can", "wastebasket", "waste bin", "dustbin", "rubbish bin", "trash bin"),
    ("teapot", "tea pot"),
    ("pillow", "cushion"),
    ("backpack", "rucksack", "knapsack"),
    ("suitcase", "luggage"),
    ("handbag", "purse"),
    ("book", "novel", "textbook", "paperback"),
    ("desk", "writing desk", "computer desk", "work desk", "office desk"),
    ("bicycle", "bike"),
    ("wine glass", "glass", "drinking glass"),
    ("clock", "wall clock", "alarm clock"),
    ("teddy bear", "teddy", "stuffed animal", "plush toy"),
)
# Category words for groups of labels ("how many pieces of furniture", "any appliance on the counter").
HYPERNYMS: dict[str, tuple[str, ...]] = {
    "furniture": ("table", "dining table", "chair", "sofa", "couch", "bed", "shelf", "bookcase", "cabinet",
                  "desk", "bench", "stool", "armchair", "dresser", "wardrobe", "nightstand"),
    "seat": ("chair", "sofa", "couch", "bench", "stool", "armchair"),
    "appliance": ("refrigerator", "microwave", "oven", "toaster", "dishwasher", "washing machine", "kettle",
                  "coffee maker", "robot vacuum"),
    "electronics": ("tv", "monitor", "laptop", "cell phone", "keyboard", "mouse", "remote", "printer",
                    "computer", "tablet", "speaker", "microwave"),
    "device": ("tv", "monitor", "laptop", "cell phone", "keyboard", "mouse", "remote", "printer", "computer",
               "tablet", "speaker", "robot vacuum"),
    "container": ("box", "bottle", "bowl", "cup", "mug", "coffee mug", "vase", "jar", "basket", "bin",
                  "bucket", "teapot", "kettle"),
    "dishware": ("cup", "mug", "coffee mug", "bowl", "plate", "wine glass", "teapot", "saucer"),
    "tableware": ("cup", "mug", "coffee mug", "bowl", "plate", "wine glass", "fork", "knife", "spoon"),
    "kitchenware": ("cup", "mug", "coffee mug", "bowl", "plate", "teapot", "kettle", "pot", "pan"),
    "utensil": ("fork", "knife", "spoon", "spatula", "ladle"),
    "drinkware": ("cup", "mug", "coffee mug", "wine glass", "bottle", "glass"),
    "animal": ("dog", "cat", "bird", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"),
    "vehicle": ("bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat"),
    "structure": STRUCTURE_LABELS,
    "surface": ("table", "dining table", "desk", "counter", "shelf", "floor"),
    "storage": ("shelf", "cabinet", "bookcase", "box", "drawer", "wardrobe"),
}
HYPERNYM_PHRASES = {"piece of furniture": "furniture", "pieces of furniture": "furniture",
                    "furniture item": "furniture", "furniture items": "furniture", "something to sit on": "seat",
                    "somewhere to sit": "seat", "place to sit": "seat", "electronic device": "electronics",
                    "electronic devices": "electronics", "kitchen appliance": "appliance",
                    "kitchen appliances": "appliance", "household appliance": "appliance"}

# Plural -> singular for words the suffix rules get wrong; lemmatise() handles the rest.
IRREGULAR_PLURALS = {
    "people": "person", "men": "man", "women": "woman", "children": "child", "mice": "mouse",
    "knives": "knife", "shelves": "shelf", "leaves": "leaf", "feet": "foot", "teeth": "tooth",
    "geese": "goose", "dice": "die", "loaves": "loaf", "wolves": "wolf", "halves": "half", "selves": "self",
    "cacti": "cactus", "radii": "radius", "species": "species", "series": "series", "glasses": "glass",
    "boxes": "box", "buses": "bus", "couches": "couch", "benches": "bench", "dishes": "dish",
    "watches": "watch", "sandwiches": "sandwich", "matches": "match", "brushes": "brush",
    "toothbrushes": "toothbrush", "wardrobes": "wardrobe", "vases": "vase", "stoves": "stove",
    "drawers": "drawer", "skis": "skis", "scissors": "scissors", "headphones": "headphones", "stairs": "stairs",
    "pants": "pants", "jeans": "jeans", "clothes": "clothes", "electronics": "electronics", "keys": "key",
    "faucets": "faucet", "tvs": "tv", "pcs": "pc", "sofas": "sofa", "cds": "cd", "dvds": "dvd",
    "gas": "gas", "lens": "lens", "canvas": "canvas", "bus": "bus", "glass": "glass", "grass": "grass",
    "mattress": "mattress", "this": "this", "its": "its", "is": "is", "was": "was", "has": "has",
    "plus": "plus", "us": "us", "yes": "yes", "always": "always", "towels": "towel",
    "cushions": "cushion", "clocks": "clock", "tomatoes": "tomato", "potatoes": "potato", "heroes": "hero",
    "shoes": "shoe", "toes": "toe", "canoes": "canoe", "radios": "radio", "pianos": "piano",
    "photos": "photo", "videos": "video", "studios": "studio", "kilos": "kilo", "stereos": "stereo",
    "cookies": "cookie", "movies": "movie", "ties": "tie", "pies": "pie", "lies": "lie",
}


def lemmatise(word: str) -> str:
    """Singular of an English noun by rules (irregular table, then suffixes); other words unchanged.

    Written by hand: spaCy / NLTK lemmatisers need their models or data, which a robot may not have; the
    rules cover the plural nouns of object names. Multi-word phrases lemmatise their last word.
    """
    if " " in word:
        head, _, last = word.rpartition(" ")
        return f"{head} {lemmatise(last)}"
    w = word.lower()
    if w in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[w]
    if len(w) <= 3 or w.endswith(("ss", "us", "is", "ous")):
        return w
    for suf, rep in (("ies", "y"), ("ves", "f"), ("xes", "x"), ("ches", "ch"), ("shes", "sh"), ("sses", "ss"),
                     ("zes", "z")):
        if w.endswith(suf) and len(w) > len(suf) + 1:
            return w[: -len(suf)] + rep
    if w.endswith("s"):
        return w[:-1]
    return w


def known_nouns() -> set[str]:
    """Every noun (singular) of the tables above: a word here that matches no label is absent, not unknown."""
    out = set(STRUCTURE_LABELS) | set(SYNTH_LABELS) | set(COCO_LABELS) | set(HOUSEHOLD_NOUNS)
    for g in SYNONYM_GROUPS:
        out.update(g)
    for k, v in HYPERNYMS.items():
        out.add(k)
        out.update(v)
    out.update(HYPERNYM_PHRASES)
    return {lemmatise(n) for n in out}
