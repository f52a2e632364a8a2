"""Words people build secrets from, for the secret-strength estimate (settings/secret_strength.py).

Kept short on purpose: these are the guesses an attacker tries first (defaults, password favourites, keyboard
rows, frequent English words, this product's own vocabulary), so each costs only log2(len(WORDS)) bits. A word
missing here is still charged per character, never for free.
"""

from __future__ import annotations

_LIST = """
    password passwd pass secret secrets changeme change default admin administrator root user login guest test
    testing demo example sample dummy temp token key keys api apikey access auth worker workers arcade bastion
    server service mcp tool tools prod production staging stage dev develop development local localhost shared
    hmac jwt sign signing private public master main backup config setting settings letmein welcome hello
    trustno iloveyou love lover loveme sunshine shadow dragon monkey football baseball soccer hockey princess
    superman batman starwars pokemon ninja master killer freedom whatever qwerty qwertz azerty asdf asdfgh
    asdfghjkl zxcv zxcvbn zxcvbnm qwertyuiop qazwsx wsx edc rfv yhn ujm abc abcd xyz aaa qwe asd zxc
    correct horse battery staple stapler the and for are but not you all any can had her was one our out
    day get has him his how man new now old see two way who boy did its let put say she too use
    that with have this will your from they know want been good much some time very when come here just
    like long make many more only over such take than them well were what word words work world year years
    about after again also back because before being below between both call came could down each even
    every first found great hand help home house into kind last left life line little look made might most
    move must name never next night number often open other part people place point right same should show
    small sound still study their there these thing think three through under until water where which while
    white without would write young blue green black brown orange purple yellow silver gold golden red pink
    apple banana cherry lemon orange grape mango peach berry coffee cookie cheese pizza chocolate sugar honey
    summer winter spring autumn fall january february march april may june july august september october
    november december monday tuesday wednesday thursday friday saturday sunday morning evening today tomorrow
    cat dog dogs cats fish bird horse tiger lion bear wolf eagle falcon snake shark whale rabbit mouse
    river ocean mountain forest island desert storm thunder rain snow cloud star stars moon sun earth fire
    ice stone rock wind light dark magic power energy rocket planet space galaxy
    alpha beta gamma delta epsilon omega sigma zeta theta lambda kappa
    zero one two three four five six seven eight nine ten eleven twelve hundred thousand million
    company business office team project product client customer account money bank card cash credit
    computer internet network system systems database data cloud linux windows apple google github python
    docker kubernetes amazon azure oracle
    super happy lucky crazy cool hot big best new my our your
    friend family mother father sister brother baby girl boy woman women men king queen prince lady
    charlie michael jordan jennifer thomas robert daniel andrew joshua matthew ashley jessica amanda george
    harley hunter ranger buster tigger maggie ginger pepper summer
    open sesame secure security safe safety protect protected lock unlock door gate wall
"""
WORDS: frozenset[str] = frozenset(_LIST.split())
