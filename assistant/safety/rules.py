"""The rule layer of crisis screening: weighted cues over the message (explainable, and the floor under the model).

Approach
--------
1. The message is NFKC-normalised and lower-cased, then a *compact* copy is built that keeps
   only letters/digits (spaces and punctuation dropped, positions remembered).  All Korean cues
   are regular expressions over the compact copy, so spacing variants ("죽 고 싶 어",
   "죽고싶다") and punctuation tricks ("자.살") hit the same cue.  Cues list common typos and
   slang directly ("죽고시퍼", "주글래", "ㅈㅅ 마렵다", "자살각", "ㅈㅎ").  Each cue also runs, as pronounced
   (연음: 죽어버리고 싶 -> 주거버리고 시퍼), over the compact copy as pronounced, so a respelling by sound hits it;
   such a match must start on a syllable as typed.  English cues run on the spaced text with word boundaries.
2. Each cue has a category and a weight.  Strong first-person statements ("죽고 싶어",
   "아빠가 때려요") weigh 0.85-0.95; indirect or ambiguous ones ("목숨", "죽을 것 같아") less;
   distress words ("힘들어", "지쳤어", "아무도 없어") only 0.2, so they matter in careful mode.
3. Idioms are masked before scoring (a cue overlapping a mask is dropped).  kiwipiepy finds the
   "X-어 죽겠다" intensifier (배고파 죽겠다, 피곤해서 죽을 것 같아): 죽 after a predicate + 어/아/어서
   and before 겠 or 을 것/줄/뻔/맛; 죽 + 고 싶 never is one.  Regexes mask 죽을 맛, 죽이는 노래,
   자살골, 유서 깊은, 목숨 걸고, "숙제 다 끝내고 싶다", "시험이 사라졌으면".
4. Context discounts: topic nouns (자살, 가출, 학대, 학교폭력 ...) count for 20% inside
   career/information talk ("자살예방 상담사는 무슨 일 해?", "가정폭력 피해자를 돕는 변호사");
   killing verbs count for 30% in game talk; "집 나갈 거야" counts for 30% next to 자취/독립.
5. Score = noisy-OR of the distinct cue weights (0..1).  Crisis when score >= 0.5, or >= 0.2
   in careful mode.  The category is the one with the highest score (ties: suicide, self_harm,
   abuse, violence, runaway); distress-only hits in careful mode are treated as "suicide",
   whose script carries every help line.

Limits
------
Rules read one message at a time and match words: indirect phrasings without the words slip
through, which is why `assistant.safety.crisis` puts a learned classifier beside them and the
final decision takes either.
Kiwi is loaded lazily once (1-2 s on the first message containing "죽"; warm it up at startup) and
only consulted when the text contains "죽"; a warm call takes well under 1 ms for chat-sized text.
"""


from __future__ import annotations

import math
import re
import threading
import unicodedata
from dataclasses import dataclass

from assistant.text_features import carry, pronounced

CATEGORIES = ("suicide", "self_harm", "abuse", "violence", "runaway")  # tie-break priority
THRESHOLD, CAREFUL_THRESHOLD = 0.5, 0.2  # score needed for a crisis: normal / careful mode
_WEAK = 0.2
_TOPIC_DISCOUNT = 0.2  # topic nouns inside career / information talk
_GAME_DISCOUNT = _HOME_DISCOUNT = 0.3  # killing verbs in game talk; "leaving home" next to 자취, 기숙사


@dataclass(frozen=True)
class RuleResult:
    crisis: bool  # score at or above the (careful) threshold
    category: str | None  # set when crisis
    score: float  # noisy-OR of the cue weights, 0..1
    matched: tuple[str, ...]  # the text each cue matched, as typed
    distress: bool  # a distress cue (힘들어, 지쳤어, 우울해 ...) matched
    signals: tuple[str, ...] = ()  # what the classifier reads of the rules: "<category>:strong|weak", distress,
    #                                career / game / home talk, mask (an idiom or masked phrase was found)


# ---------------------------------------------------------------- cue table
# (category or None for distress, weight, compact-text regex, flags)
# flags: t = topic noun (career discount), g = killing verb (game discount),
#        h = leaving home (independence discount), e = run on the spaced text (English, punctuation),
#        w = must start a word in the typed text (혼자 살 / 투자해 / 과학 대회 must not read as 자살 / 자해 / 학대)
_FAM = (r"(?:아빠|아버지|엄마|어머니|부모님?|새아빠|새엄마|계부|계모|의붓\w{1,3}|삼촌|이모부|고모부|"
        r"할아버지|할머니|친척|오빠|형|누나|언니|선생님?|쌤|담임|코치|감독|관장|목사|어른|아저씨)")
_PEER = r"(?:애들|친구들?|선배들?|후배들?|걔네?들?|얘네|쟤네|일진들?|동급생|양아치들?|같은반)"
_HIT = (r"(?:때리|때려|때렸|때린|패서|패고|팼|짓밟|발로밟|걷어차|발로차|목을?조르|목을?졸|뺨|주먹으로|벨트로|"
        r"회초리|몽둥이|옷걸이로|머리채)")
_TOUCH = r"(?:만지|만져|만졌|더듬)"

_CUES_SRC: tuple[tuple[str | None, float, str, str], ...] = (
    # suicide: direct, slang, typos
    ("suicide", 0.95, r"죽[고구꼬거](?:싶|십|시[퍼프포펑])|(?:뒤|디)지[고구](?:싶|십)|뒤져버리고싶", ""),
    ("suicide", 0.85, r"(?:뒤|디)져버릴(?:까|래|거|꺼)|ㅈㄱㅅ[ㄷㅇㅍ]", ""),  # slang and 초성 (dev bank)
    ("suicide", 0.9, r"죽어버리고싶|죽어버릴(?:래|까|거|꺼)|죽어버려야|죽어야(?:겠|지|할것)|그만살고싶", ""),
    ("suicide", 0.45, r"죽을래|주글래|죽을까|주글까", "g"),
    ("suicide", 0.6, r"(?:죽을래|주글래)(?![ㅋㅎㅠ\s]*[?？])", "eg"),  # 죽을래? asks someone else; 주글래 is about me
    ("suicide", 0.85, r"(?:나|난|저|전|그냥|걍|차라리|이제)(?:그냥|걍|이제|진짜|차라리)?(?:죽을래|주글래|죽을까|주글까|죽을거|"
                      r"죽을꺼|죽을게)|(?:나|난|내가|저|제가)(?:같은(?:건|애는|사람은)?|따위(?:는)?)?(?:그냥)?(?:없어져야|사라져야)", ""),
    ("suicide", 0.95, r"[자쟈]살(?:하고|할|하려|하면|해야|해버|했으면|충동|생각|시도|계획|마렵|각|방법|하는법)", "w"),
    ("suicide", 0.8, r"자\d?살|유서", "tw"),
    ("suicide", 0.8, r"극단적(?:인)?선택", "t"),
    ("suicide", 0.95, r"극단적(?:인)?선택(?:을)?(?:하고싶|할까|하려|할거|할래|해버|생각|충동|마렵)", ""),
    ("suicide", 0.85, r"ㅈㅅ(?:하고|할|하려|마렵|각|충동|생각|하면)", ""),
    ("suicide", 0.85, r"(?:죽|뒤지)는게(?:더|차라리)?(?:나|낫|편)|죽으면(?:편|끝|나을|좋을|다해결|다들)|(?:내가|차라리|나)?죽었으면"
                      r"(?:좋|해)|죽어도(?:상관없|괜찮|아무도|모를|모르)|죽는(?:방법|법)|죽을방법|안아프게죽|고통없이죽|어떻게죽", ""),
    ("suicide", 0.85, r"사라지고(?:싶|시퍼)|사라져버리(?:고싶|고|ㄹ)|사라졌으면좋|사라지면(?:편|좋|나을|다들|모두)|"
                      r"없어지고싶|없어져버리고싶|없어졌으면좋|없어지면(?:편|좋|나을|다들|모두|다)|"
                      r"없어져도(?:아무도|모를|상관|괜찮)|세상에서(?:사라|없어)|소멸하고싶", ""),
    ("suicide", 0.85, r"살기(?:싫|시러|실어)|살기가싫|살고싶지(?:가)?않|사는게(?:싫|의미없|무의미|지옥|지겨)|"
                      r"살(?:이유|가치|의미)(?:가|도)?없|살아야(?:할|하는)이유|살아서뭐|살아있기싫|살아있고싶지않|살고싶은마음(?:이)?없", ""),
    ("suicide", 0.85, r"(?:다|모든걸|모든것을?|전부|인생|삶을?|이생|목숨)(?:을|를)?끝내(?:고싶|고시퍼|버리|야겠|려고|자)|"
                      r"끝내버리고싶|생을마감|다끝났으면|다끝나버렸으면", ""),
    ("suicide", 0.45, r"끝내고싶|다그만(?:하고|두고)싶|사는게(?:너무)?힘들", ""),
    ("suicide", 0.8, r"눈(?:을)?(?:안떴으면|안떠졌으면|뜨지않았으면|안뜨고싶)|영원히잠들|깨어나지않았으면|"
                     r"안깨어났으면|(?:안|못)깼으면|깨지않았으면|안깨고싶|내일이(?:안왔으면|오지않았으면)", ""),
    ("suicide", 0.7, r"태어나지(?:말|않았)|왜태어났|태어난게(?:죄|후회|잘못)|태어나서미안", ""),
    ("suicide", 0.9, r"뛰어내리|뛰어내릴|투신|옥상(?:에|에서|으로)?(?:올라가|가)?(?:서)?.{0,6}(?:떨어지|뛰어)|"
                     r"목숨(?:을)?끊|스스로목숨|목숨(?:을)?버리|목(?:을)?매(?:달|고|려|면|어|는|기)", ""),
    ("suicide", 0.85, r"번개탄|연탄(?:을)?피우|수면제(?:를)?(?:모|많이|한꺼번|왕창|\d+알)|"
                      r"약(?:을|들)?(?:모아|모았|모으고|한꺼번|한번에|왕창|털어)|모아둔약|"
                      r"한강(?:물)?온도|한강(?:에|가서)?(?:뛰|들어가|빠지)|마포대교(?:에서|가서|가고)", ""),
    ("suicide", 0.45, r"목숨|(?<!을)죽을(?:것|거)같|죽을듯", ""),
    ("suicide", 0.6, r"죽(?:진|지도|지는)못하", "g"),
    ("suicide", 0.95, r"\b(?:wants? to die|wanna die|kill(?:ing)? myself|(?<!\d )kms|end (?:my life|it all)|unalive|"
                      r"don'?t want to (?:live|be alive|exist)|better off dead|no reason to live)\b", "e"),
    ("suicide", 0.8, r"\bsuicid\w*", "et"),
    # self-harm
    ("self_harm", 0.95, r"자해(?:를)?(?:했|하고싶|하고|해|함|하게|충동|흔적|흉터|자국|상처)|자해러|자해계", "w"),
    ("self_harm", 0.85, r"자해", "tw"),
    ("self_harm", 0.85, r"ㅈㅎ(?:충동|하고|했|함|하는|해|러|마렵|마려)|칼빵|담배빵", ""),
    ("self_harm", 0.95, r"손목(?:을|에)?(?:긋|그었|그어|그을|그은|긁|칼|커터|베)", ""),
    ("self_harm", 0.9, r"(?:칼|커터칼|커터|면도날|면도칼|가위|샤프|유리)(?:로|으로)(?:팔|손목|다리|허벅지|몸|살)?(?:을|를|에)?"
                       r"(?:긋|그었|그어|그을|그은|긁|찔)|(?:팔|손목|다리|허벅지|몸)(?:을|를|에)?(?:또)?(?:칼로)?"
                       r"(?:베었|베어|그었|긋|그어|칼질|칼을?대|칼자국)", ""),
    ("self_harm", 0.85, r"피(?:가)?(?:나게|날때까지|나도록|나올때까지)(?:긁|뜯|때리|물어|할퀴|깨물|꼬집)|"
                        r"스스로(?:를)?(?:때리|다치게|상처)|(?:제|내|자기)?몸에상처(?:를)?(?:내|냈|낸|주)|"
                        r"벽에(?:다)?머리(?:를)?.{0,4}(?:박|찧)|머리(?:를)?(?:벽에|바닥에)(?:박|찧)", ""),
    ("self_harm", 0.5, r"(?:흉터|상처|자국)(?:를|을)?(?:가리|숨기|들킬|안보이게)|긴팔(?:로|만)?(?:가리|숨기)|"
                       r"피(?:를)?봐야(?:진정|편|살것)|아파야(?:진정|살것|편)|아플때까지", ""),
    ("self_harm", 0.9, r"\bself[- ]?harm\w*|\b(?:cut|cutting|hurt|hurting|burn|burning) myself\b", "e"),
    # abuse
    ("abuse", 0.9, _FAM + r"(?:이|가|께서|는|은|도|랑|이랑)?.{0,15}?" + _HIT, ""),
    ("abuse", 0.9, _FAM + r"(?:한테|에게|께|한테서)(?:또|계속|매일|엄청|많이|막|맨날|자주|심하게)?(?:두들겨|얻어)?맞"
                   r"(?:았|아|고|는|을|은)", ""),
    ("abuse", 0.85, _FAM + r".{0,15}?(?:몸|가슴|엉덩이|허벅지|다리|속옷|치마|밤에|몰래|자꾸|억지로)(?:을|를|에|도)?.{0,6}?"
                    + _TOUCH + r"|(?:가슴|엉덩이|허벅지|속옷|치마속)(?:을|를)?.{0,4}" + _TOUCH
                    + r"|억지로(?:만지|만져|뽀뽀|키스|벗)", ""),
    ("abuse", 0.95, r"학대(?:를)?(?:받|당)|성(?:추행|폭행|폭력)(?:을|를)?(?:당|했|하려)", "w"),
    ("abuse", 0.85, r"학대|성추행|성폭행|성폭력|강간|추행|몰카|불법촬영|그루밍|가정폭력", "tw"),
    ("abuse", 0.85, r"(?:때리는|때렸던|때리던|때리시는)" + _FAM + r"|맞고살|때리고욕|욕하고때|때리면서욕|(?:집에서|집에만오면)(?:매일|맨날|또|자꾸|계속)?(?:두들겨|얻어)?맞"
                    r"|나가죽|죽으래|죽으라고|죽어버리래", ""),
    ("abuse", 0.8, r"(?:방|집|베란다|창고|화장실)(?:에|에다)?가둬|(?:집에서|집밖으로)(?:쫓겨|내쫓|쫓아)", ""),
    ("abuse", 0.45, r"밥(?:을)?(?:안줘|안줌|안주고|안주셔|안줘요|못먹게)|내쫓|쫓아내|쫓겨났", ""),
    ("abuse", 0.45, r"멍(?:이)?(?:들|안빠|생겼|투성|자국)", ""),
    ("abuse", 0.3, _FAM + r".{0,10}?(?:욕하|욕을|소리지르|소리질러|쓰레기라|병신이라)", ""),
    ("abuse", 0.6, _FAM + r".{0,10}?(?:밤에|몰래|자꾸).{0,6}?(?:내|제)?방에(?:몰래)?(?:들어와|들어온|들어오)"
                   r"|가뒀|가두고|가둬요|굶기|굶겨", ""),
    ("abuse", 0.9, r"\b(?:dad|mom|father|mother|parents?|step ?dad|step ?mom|uncle)\b.{0,20}\b(?:hits?|beats?|hurts?|"
                   r"touch(?:es|ed)?|abuses?d?)\b|\babused\b", "e"),
    # violence (peer violence, bullying, threats, wanting to hurt someone)
    ("violence", 0.9, r"죽여버리|죽여버릴|죽일(?:거|꺼|까|래|테|려고|생각)|죽이고싶|죽이고말|죽여야|패버리|패죽|때려죽|"
                      r"찔러(?:버리|죽|버릴)|찌를(?:거|꺼|까|래)|칼(?:을)?들고(?:가|갈|찾아)|칼로찌|불(?:을)?질러|"
                      r"불지를|복수할(?:거|꺼|래)", "g"),
    ("violence", 0.7, r"죽인다고|죽여버린다고|죽인대|죽이겠다고|때린대|때린다고|때리겠다고|패버린대|패버린다고|"
                      r"스토킹|스토커", ""),
    ("violence", 0.95, r"(?:학교폭력|학폭|폭력|폭행|괴롭힘|따돌림|왕따|집단폭행|린치|사이버폭력|사이버불링|성희롱|협박|갑질|저격|박제|능욕)"
                       r"(?:을|를)?(?:당하|당해|당했|당한|당함|받|받아|받고|받았|받는)", ""),
    ("violence", 0.7, r"학교폭력|학폭|따돌려|따돌림|따돌리|왕따|은따|셔틀|삥|협박|폭행|일진|집단폭행|사이버불링|린치", "tw"),
    ("violence", 0.45, r"괴롭힘|괴롭혀|괴롭히", "t"),
    ("violence", 0.85, _PEER + r"(?:이|가|들이)?.{0,12}?(?:때리|때려|때렸|팼|패고|패서|밟|협박|괴롭|따돌|가둬|가뒀|"
                       r"몰래찍|돈(?:을)?내놓)|" + _PEER + r"(?:한테|에게)(?:또|계속|매일|맨날)?(?:두들겨|얻어)?맞", ""),
    ("violence", 0.75, r"(?:학교|학원|교실)에서(?:또|계속|매일|맨날)?(?:두들겨|얻어)?맞(?:았|아|고)", ""),
    ("violence", 0.8, r"돈(?:을)?(?:뺏|빼앗|뜯|갈취|내놓으라|상납)|맞고다녀|맞고다니|안하면(?:맞|때)", ""),
    ("violence", 0.45, _PEER + r"(?:이|가|들이)?.{0,12}?(?:욕하|욕해|놀리|놀려|퍼뜨)|단톡(?:방)?.{0,10}?(?:욕|저격|강퇴|박제|능욕)", ""),
    ("violence", 0.85, r"\bbull(?:y|ied|ying)\b|\b(?:kill|stab|shoot) (?:him|her|them|you|everyone)\b", "e"),
    # running away
    ("runaway", 0.95, r"가출(?:할|하고싶|했|해버|하려|할까|할래|중|한지|팸|해서|하면|생각|충동|마렵)", "w"),
    ("runaway", 0.85, r"가출", "tw"),
    ("runaway", 0.6, r"노숙(?:중|하|했|해)", "t"),
    ("runaway", 0.85, r"집(?:을|에서)?(?:나갈(?:거|꺼|래|생각|까|예정|려|게|테)|나가고싶|나가버릴|나가버리|나와버렸|"
                      r"나와버릴|뛰쳐나|도망)", "h"),
    ("runaway", 0.7, r"집(?:을)?떠나(?:고싶|버리|버릴|야겠|고말)|(?:짜증|화나|화가나|싸우|싸워|열받|빡쳐).{0,6}집(?:을)?나(?:왔|와)", "h"),
    ("runaway", 0.45, r"집(?:을)?나왔", "h"),
    ("runaway", 0.8, r"집(?:에|으로)?(?:안들어갈|안들어가|들어가기싫|돌아가기싫|돌아가고싶지않|들어가고싶지않|안돌아갈|"
                     r"못들어가겠)", "h"),
    ("runaway", 0.3, r"집에?가기싫|짐(?:을)?(?:싸서|싸고|쌌)|(?:친구네|친구집|모텔|찜질방|pc방|피시방|길에서|공원|놀이터)"
                     r"(?:에서|서)?(?:자|잘|잤|지내|밤새|살)", ""),
    ("runaway", 0.8, r"\brun(?:ning)? away\b|\brunaway\b", "e"),
    # distress: counts only in careful mode (or when several pile up)
    (None, _WEAK, r"힘들(?:어|다|고|어요|네|었|어서|지|잖|음)|지쳤|지친다|지쳐|지치고|아무도없|나혼자|혼자인것같|외로워|외롭|"
                  r"포기하고싶|다포기|의미없|무의미|버티기힘들|못버티|더는못|숨막혀|숨이막|우울|괜찮지않|안괜찮|죽겠|"
                  r"죽음|버거워|버겁|무서워|잠을?못자|울고싶|희망이없|미래가없|아무것도하기싫|ㅈㅅ|피나게|만지는|만져|그만하고싶|"
                  r"마지막인사|그동안고마웠", ""),
    (None, _WEAK, r"\b(?:nobody cares|so tired|exhausted|alone|hopeless|depressed)\b", "e"),
)

_MASKS_SRC = (
    r"죽을맛|죽을뻔|죽는줄|죽었다(?:복창|깨어나도)|죽기살기|죽기아니면|죽고못(?:살|사)|죽이는|죽인다(?!고)|죽여준|"
    r"죽여주|죽여줬|죽였다|죽이네|죽이더라|죽이던데|죽을까봐|죽을까걱정",
    r"자살골|자살(?:예방|방지)|자해(?:예방|방지)|유서(?:가)?깊|목숨(?:을|까지)?걸|번개탄(?:에|으로)?(?:고기|삼겹|구워|구이)",
    r"(?:너|니|넌|너네|니네|너희)(?:진짜|그러다|그러면|이러면)?(?:죽을래|주글래|죽는다|뒤질래|디질래|죽을까|죽고싶냐)",
    r"(?:숙제|과제|공부|시험|일|게임|이거|이것|방학|학기|수행평가|수행|레포트|보고서|프로젝트|발표|연습|준비|알바|청소|"
    r"빨리|얼른|먼저|관계|연애|싸움)(?:을|를|도|은|는|좀)?(?:빨리|얼른|오늘|좀|먼저|내일까지|다)*끝내(?:고싶|버리고싶|야겠|려고)",
    r"(?:시험|숙제|과제|학교|학원|수능|월요일|여드름|뱃살|걱정|고민|스트레스|모기|벌레|코로나|수학|영어|중간고사|기말고사|"
    r"모의고사)(?:이|가|은|는|도|들|들이)?(?:그냥|다|좀|진짜|제발|빨리)*(?:사라|없어)(?:지|졌|져)",
    r"(?:당한|당하는|받는|받은|겪는|겪은|하는)(?:친구|청소년|아이|아동|학생|사람|피해자|환자)(?:들)?(?:을|를|에게|이|의)?"
    r"(?:돕|도와|지원|위한|위해|보호|상담|치료)",
    r"(?:에|에게|한테)목(?:을)?매|멍때리|멍하니|맞는말|맞는거|맞는지|맞는것|(?:버스|차|계단|침대|의자|무대)(?:에서)?뛰어내",
    r"때려(?:치|쳐|칠|잡)|때리치|(?:모기|공|벌레|파리|북|드럼|못)(?:을|를)?(?:잡|때려|때리|쳐)|시간(?:을)?(?:죽이|죽여|죽일)|"
    r"셔틀(?:버스|콕)|(?:학폭|학교폭력|폭력|왕따|따돌림|괴롭힘)(?:이|가|은|는|도)?(?:없는|없어|없애|사라|근절|예방|방지|줄이|막)",
    r"(?:혼자|혼자서|같이|함께|따로|둘이|우리끼리|시골에서|서울에서|외국에서|해외에서|여기서|거기서|기숙사에서)(?:는|도)?"
    r"살(?:기|고|아|수|면|까)",
)
_GLUE = re.compile(r"(?:또|진짜|그냥|걍|계속|다시|맨날|매일|몰래|결국|차라리|이제|정말|아동|정서|정서적|신체|신체적|언어|"
                   r"가정|부모|아빠|엄마)$")
# context words: phrases may span spaces ("되고 싶"), nouns must be typed as one word ("나의 사랑" is not 의사)
_CAREER_PHRASE = re.compile(r"되고싶|되려면|될수있|되는법|되는방법|하는일|무슨일|어떤일|돕는|도와주는|지원하는")
_CAREER_NOUN = re.compile(
    r"직업|학과|전공|자격증|상담사|상담교사|사회복지사|경찰|변호사|간호사|의사|심리학|뉴스|기사|캠페인|예방|교육|봉사|"
    r"보고서|발표|드라마|영화|소설|웹툰|쉼터|연구|통계|수업|토론|prevention|counsel")
_GAME_CTX = re.compile(r"게임|롤(?:에서|하다|하는|할때|판|겜|티어)|배그|오버워치|발로란트|피파|마크|마인크래프트|메이플|"
                       r"서든|캐릭|몹|보스|npc|레벨|랭겜|스킬|좀비|모기|벌레|바퀴|파리")
_HOME_CTX = re.compile(r"자취|독립|기숙사|유학|이사|대학가면|대학에가면|졸업하면|성인되면|스무살|취업하면|20살")


@dataclass(frozen=True)
class _Cue:
    idx: int
    category: str | None
    weight: float
    pattern: re.Pattern[str]
    flags: str
    sound: re.Pattern[str] | None = None  # the pattern as pronounced, run on the text as pronounced (None: the same)


def _rx(src: str) -> re.Pattern[str]:  # text is NFKC too, where ㅈ becomes U+110C
    return re.compile(unicodedata.normalize("NFKC", src))


def _sound(src: str) -> re.Pattern[str] | None:
    """The pattern with its syllables as pronounced (연음: 죽어버리 -> 주거버리), for respellings by sound; a syllable
    that ends an alternative also matches with its final carried into the text's next syllable (싶 in 시퍼).  None
    when that changes nothing."""
    spoken = pronounced(src)
    out, run = [], 0  # run: the Hangul syllables typed in a row up to here
    for i, ch in enumerate(spoken):
        run = run + 1 if "가" <= ch <= "힣" else 0
        ends = i + 1 == len(spoken) or spoken[i + 1] in "|)"
        moved = carry(ch) if ends and run >= 3 else None  # short runs (맞, 난) would match too much
        out.append(f"(?:{ch}|{moved[0]}(?=[{moved[1]}-{moved[2]}]))" if moved else ch)
    return _rx("".join(out)) if out != list(src) else None


_CUES = tuple(_Cue(i, c, w, _rx(p), f, None if "e" in f else _sound(p)) for i, (c, w, p, f) in enumerate(_CUES_SRC))
_MASKS = tuple(_rx(p) for p in _MASKS_SRC)
_SOUND_MASKS = tuple(m for m in map(_sound, _MASKS_SRC) if m is not None)

# ---------------------------------------------------------------- Kiwi (lazy, once)
_kiwi = None
_kiwi_lock = threading.Lock()
_INTENS_EC = {"어", "아", "어서", "아서", "여", "여서", "게"}
_INTENS_NEXT = {"것", "거", "줄", "뻔", "맛", "지경", "듯"}


def _get_kiwi():
    global _kiwi
    if _kiwi is None:
        with _kiwi_lock:
            if _kiwi is None:
                from kiwipiepy import Kiwi  # imported here: loading the model takes about a second
                _kiwi = Kiwi()
    return _kiwi


def _intensifier_spans(norm: str) -> list[tuple[int, int]]:
    """Spans (in `norm`) of the "X-어 죽겠다" intensifier, e.g. 배고파 죽겠다, 피곤해서 죽을 것 같아."""
    toks = _get_kiwi().tokenize(norm)
    spans = []
    for i, tok in enumerate(toks):
        if tok.form != "죽" or not tok.tag.startswith(("VV", "VX")) or i < 2:
            continue
        ec, pred = toks[i - 1], toks[i - 2]
        if ec.tag != "EC" or ec.form not in _INTENS_EC or not pred.tag.startswith(("V", "XS")):
            continue
        nxt = toks[i + 1:i + 3]
        if not nxt or (nxt[0].form == "고" and len(nxt) > 1 and nxt[1].form == "싶"):
            continue
        intens = nxt[0].form == "겠" or (
            nxt[0].tag == "ETM" and len(nxt) > 1 and nxt[1].form in _INTENS_NEXT)
        if intens or tok.tag.startswith("VX"):
            end = nxt[-1].start + nxt[-1].len if len(nxt) > 1 else nxt[0].start + nxt[0].len
            spans.append((tok.start, end))
    return spans


# ---------------------------------------------------------------- detection
def _compact(norm: str) -> tuple[str, list[int]]:
    keep = [(i, ch) for i, ch in enumerate(norm) if ch.isalnum()]
    return "".join(ch for _, ch in keep), [i for i, _ in keep]


def _hits(norm: str) -> tuple[list[tuple[_Cue, int, int, float]], set[str]]:
    """Every non-masked cue hit as (cue, start, end, effective weight), offsets in `norm`; and the context signals
    seen (career, game, home, mask: an idiom or a masked phrase)."""
    compact, pos = _compact(norm)
    if not compact:
        return [], set()
    spoken = pronounced(compact)  # as long as compact: a match's offsets are the same in both
    masks: list[tuple[int, int]] = []  # in norm offsets
    for m, text in [(m, compact) for m in _MASKS] + [(m, spoken) for m in _SOUND_MASKS]:
        masks += [(pos[x.start()], pos[x.end() - 1] + 1) for x in m.finditer(text)]
    if "죽" in compact:
        masks += _intensifier_spans(norm)

    def typed_as_one_word(x: re.Match[str]) -> bool:
        return pos[x.end() - 1] - pos[x.start()] == x.end() - x.start() - 1

    def starts_word(cs: int) -> bool:
        s = pos[cs]
        return s == 0 or not norm[s - 1].isalnum() or bool(_GLUE.search(compact, 0, cs))

    career = bool(_CAREER_PHRASE.search(compact)) or any(map(typed_as_one_word, _CAREER_NOUN.finditer(compact)))
    game = any(map(typed_as_one_word, _GAME_CTX.finditer(compact)))
    home = bool(_HOME_CTX.search(compact))
    signals = {name for name, on in (("career", career), ("game", game), ("home", home), ("mask", bool(masks))) if on}
    out = []
    for cue in _CUES:
        if "e" in cue.flags:
            spans = [(x.start(), x.end()) for x in cue.pattern.finditer(norm)]
        else:
            typed = list(cue.pattern.finditer(compact))
            # a match by sound counts where the typed text has none, and starts on a syllable as typed (이번엔 안 is not 난)
            heard = [x for x in (cue.sound.finditer(spoken) if cue.sound else ()) if spoken[x.start()] == compact[x.start()]
                     and not any(x.start() < t.end() and t.start() < x.end() for t in typed)]
            spans = [(pos[x.start()], pos[x.end() - 1] + 1) for x in typed + heard
                     if x.end() > x.start() and ("w" not in cue.flags or starts_word(x.start()))]
        for s, e in spans:
            if any(s < me and ms < e for ms, me in masks):
                continue
            w = cue.weight
            if "t" in cue.flags and career:
                w *= _TOPIC_DISCOUNT
            if "g" in cue.flags and game:
                w *= _GAME_DISCOUNT
            if "h" in cue.flags and home:
                w *= _HOME_DISCOUNT
            out.append((cue, s, e, w))
    strong = [(s, e) for cue, s, e, _ in out if cue.category is not None]
    return [h for h in out if h[0].category is not None or not any(s < h[2] and h[1] < e for s, e in strong)], signals


def _noisy_or(weights: list[float]) -> float:
    return round(1.0 - math.prod(1.0 - w for w in weights), 4)


def match_rules(text: str, *, careful: bool = False) -> RuleResult:
    """The cues in one message. `careful=True` (after an earlier crisis) lowers the threshold."""
    norm = unicodedata.normalize("NFKC", text).lower()
    hits, signals = _hits(norm)
    best: dict[tuple[int, str], float] = {}  # strongest weight per cue; distress cues count per phrase
    for cue, s, e, w in hits:
        key = (cue.idx, norm[s:e] if cue.category is None else "")
        best[key] = max(best.get(key, 0.0), w)
    score = _noisy_or(list(best.values()))
    crisis = score >= (CAREFUL_THRESHOLD if careful else THRESHOLD)
    category = None
    per_cat = {c: _noisy_or([w for (i, _), w in best.items() if _CUES[i].category == c]) for c in CATEGORIES}
    signals |= {f"{c}:{'strong' if v >= THRESHOLD else 'weak'}" for c, v in per_cat.items() if v > 0}
    if crisis:
        top = max(per_cat.values())
        category = next(c for c in CATEGORIES if per_cat[c] == top) if top > 0 else "suicide"
    shown = text if len(text) == len(norm) else norm  # NFKC keeps offsets for Korean; show what was typed
    matched: list[str] = []
    for surface in (shown[s:e].strip() for _, s, e, _ in sorted(hits, key=lambda h: (h[1], h[2]))):
        matched += [surface] if surface and surface not in matched else []
    distress = any(cue.category is None for cue, _, _, _ in hits)
    signals |= {"distress"} if distress else set()
    return RuleResult(crisis=crisis, category=category, score=score, matched=tuple(matched), distress=distress,
                      signals=tuple(sorted(signals)))
