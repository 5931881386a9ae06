// Every visible string of the studio and the reader's page, in Russian (the default) and English.
// Static text in HTML carries data-i18n="key" (or data-i18n-placeholder / -title / -aria-label);
// scripts call t(key, params). A value may be plural forms {one, few, many, other}, chosen by
// params.count with the language's own plural rules. {name} in a string is replaced by params.name.

const STRINGS = {
  ru: {
    'app.title': 'Двойник — студия',
    'app.name': 'Двойник',
    'app.skip': 'К тексту',
    'app.language': 'Язык интерфейса',
    'app.checkpoint': 'чекпойнт: {checkpoint}',
    'app.close': 'Закрыть',
    'app.ok': 'Готово',
    'app.cancel': 'Отмена',
    'app.refresh': 'Обновить',

    'docs.heading': 'Документы',
    'docs.new': 'Новый документ',
    'docs.empty': 'Документов пока нет.',
    'docs.chars': { one: '{n} знак', few: '{n} знака', many: '{n} знаков', other: '{n} знака' },

    'doc.none': 'Создайте документ слева или выберите готовый — и начните писать.',
    'doc.title': 'Название',
    'doc.untitled': 'Без названия',
    'doc.text': 'Текст',
    'doc.placeholder': 'Начните писать здесь. Двойник продолжит с того места, где вы остановитесь.',
    'doc.undo': 'Отменить',
    'doc.undo.hint': 'Отменить последний шаг истории документа (Ctrl+Z вне текстовых полей)',
    'doc.undo.none': 'Отменять нечего.',
    'doc.redo': 'Вернуть',
    'doc.redo.hint': 'Вернуть отменённый шаг (Ctrl+Shift+Z или Ctrl+Y вне текстовых полей)',
    'doc.redo.none': 'Возвращать нечего.',
    'doc.delete': 'Удалить',
    'doc.delete.confirm': 'Удалить документ «{title}» со всей историей? Это не отменить.',
    'doc.words': { one: '{n} слово', few: '{n} слова', many: '{n} слов', other: '{n} слова' },

    'save.saved': 'Сохранено',
    'save.saving': 'Сохраняю…',
    'save.offline': 'Не сохранено — сервер недоступен',
    'save.error': 'Не сохранено: {message}',
    'save.restored': 'Восстановлен несохранённый черновик из этого браузера; сохраняю его.',

    'doc.updatedElsewhere': 'Документ изменили в другой вкладке; здесь теперь его новая версия.',
    'draft.conflict': 'Документ изменили в другом месте — в другой вкладке или отменой, — пока вы писали. Здесь теперь версия с сервера, а ваша сохранена в этом браузере как черновик: её можно вернуть.',
    'draft.stale': 'В этом браузере остался несохранённый черновик этого документа ({time}), но документ на сервере с тех пор изменился, поэтому черновик не подставлен. Его можно вернуть (он заменит версию с сервера) или выбросить.',
    'draft.show': 'Показать черновик',
    'draft.restore': 'Вернуть мою версию',
    'draft.discard': 'Выбросить черновик',
    'draft.restored': 'Ваша версия возвращена; сохраняю её.',

    'err.offline': 'Сервер недоступен. Написанное хранится в браузере и сохранится, когда он вернётся.',
    'err.server': 'Ошибка сервера: {message}',
    'err.key': 'Нужен верный ключ API.',
    'err.unsaved': 'Документ ещё не сохранён на сервере — подождите, пока он станет доступен.',

    'gen.continue': 'Продолжить',
    'gen.continue.hint': 'Двойник напишет продолжение в нескольких вариантах (Ctrl+Enter)',
    'gen.n': 'Вариантов',
    'gen.stop': 'Остановить',
    'gen.retry': 'Ещё раз',
    'gen.discard': 'Отбросить все',
    'gen.variants': 'Варианты продолжения',
    'gen.variant': 'Вариант {n}',
    'gen.writing': 'Двойник пишет…',
    'gen.streaming': 'пишется…',
    'gen.done': { one: 'Готов {count} вариант: выберите, поправьте или отбросьте.', few: 'Готово {count} варианта: выберите, поправьте или отбросьте.', many: 'Готово {count} вариантов: выберите, поправьте или отбросьте.', other: 'Готово вариантов: {count}.' },
    'gen.stopped': 'Остановлено.',
    'gen.stopping': 'Останавливаю…',
    'gen.stoppedShort': 'остановлен',
    'gen.cut': 'поток оборвался до конца',
    'gen.busy': 'Сервер занят, повторите через {seconds} с',
    'gen.pick': 'Взять',
    'gen.pick.key': 'Клавиша {n} (вне текстовых полей) — взять вариант {n}',
    'gen.edit': 'Править',
    'gen.appendEdited': 'Добавить правку',
    'gen.appended': 'Вариант добавлен в текст.',
    'gen.discarded': 'Варианты отброшены.',
    'gen.tokens': { one: '{n} токен', few: '{n} токена', many: '{n} токенов', other: '{n} токена' },

    'finish.stop': 'конец текста',
    'finish.length': 'предел длины',
    'finish.abort': 'остановлен',

    'copy.none': 'Из книг не скопировано ничего',
    'copy.span': { one: 'Совпадение с книгами: {n} токен', few: 'Совпадение с книгами: {n} токена', many: 'Совпадение с книгами: {n} токенов', other: 'Совпадение с книгами: {n} токена' },
    'copy.alarm': '— проверьте, не переписано ли',
    'copy.words': { one: 'Совпадение с книгами: {n} слово', few: 'Совпадение с книгами: {n} слова', many: 'Совпадение с книгами: {n} слов', other: 'Совпадение с книгами: {n} слова' },
    'copy.wordsTokens': { one: '({n} токен)', few: '({n} токена)', many: '({n} токенов)', other: '({n} токена)' },
    'copy.missed': '— страж повторов этого не увидел: слова те же, что в книге, другое лишь оформление',
    'copy.missedWhy': 'Страж не даёт повторить {n} токенов подряд из книг, но сравнивает токены: другие переносы строк, кавычки, тире, «е» вместо «ё» или другое деление на токены скрывают от него повтор. Здесь не меньше {n} слов подряд совпадают с книгой.',

    'panels.label': 'Панели',
    'panels.context': 'Контекст',
    'panels.sampler': 'Настройки',
    'panels.log': 'Журнал',
    'panels.blind': 'Слепой тест',

    'meter.heading': 'Бюджет контекста',
    'meter.memory': 'Память',
    'meter.world_info': 'Мир',
    'meter.authors_note': 'Заметка автора',
    'meter.story': 'Текст',
    'meter.continuation': 'Продолжение',
    'meter.free': 'Свободно',
    'meter.cut': { one: 'обрезан {n} токен', few: 'обрезано {n} токена', many: 'обрезано {n} токенов', other: 'обрезано {n} токена' },
    'meter.total': 'Занято {used} из {budget} токенов; {reserve} оставлено на продолжение.',

    'ctx.memory': 'Память',
    'ctx.memory.hint': 'Всегда в начале контекста: кто есть кто, где и когда.',
    'ctx.note': 'Заметка автора',
    'ctx.note.hint': 'Вставляется рядом с концом текста: тон, темп, что должно случиться.',
    'ctx.depth': 'Глубина заметки (абзацев от конца)',

    'wi.heading': 'Мир',
    'wi.hint': 'Запись попадает в контекст, когда её ключ встречается в последних абзацах.',
    'wi.add': 'Добавить запись',
    'wi.keys': 'Ключи (через запятую)',
    'wi.keys.placeholder': 'Аня, Анна Петровна',
    'wi.secondary': 'Дополнительные ключи (нужен хотя бы один)',
    'wi.secondary.placeholder': 'необязательно',
    'wi.content': 'Текст записи',
    'wi.always': 'Всегда в контексте',
    'wi.remove': 'Убрать',
    'wi.inContext': 'в контексте',
    'wi.notInContext': 'не в контексте',

    'panels.interview': 'Интервью',

    's.voice': 'Голос',
    's.voice.hint': 'Чьим голосом пишет двойник: каждый автор корпуса — свой голос. Смесь взвешивает голоса.',
    's.voice.mix': 'смесь…',
    's.voice.target': '{name} (автор двойника)',

    'iv.about': 'Вопрос попадает к двойнику в рамке из прозы самого автора — реплика с тире, письмо, дневник; ответ обрывается там, где кончается его реплика.',
    'iv.choose': 'Интервью',
    'iv.new': 'Новое интервью',
    'iv.untitled': 'Интервью {n}',
    'iv.delete': 'Удалить',
    'iv.delete.confirm': 'Удалить интервью «{title}» со всеми ответами?',
    'iv.empty': 'Интервью пока нет: начните новое.',
    'iv.frame': 'Рамка',
    'iv.frame.kind': 'Вид',
    'iv.frame.preamble': 'Вступление',
    'iv.frame.preamble.hint': 'Текст перед разговором: кто спрашивает, где, когда. Можно оставить пустым.',
    'iv.frame.question': 'Вопрос',
    'iv.frame.question.hint': 'Как записан вопрос; {question} — место вопроса.',
    'iv.frame.answer': 'Начало ответа',
    'iv.frame.end': 'Конец реплики',
    'iv.frame.escapes': 'Перевод строки пишется как \\n.',
    'iv.frame.save': 'Сохранить рамку',
    'iv.frame.saved': 'Рамка сохранена: следующие вопросы пойдут в ней.',
    'iv.kind.dialogue': 'диалог (реплики с тире)',
    'iv.kind.quotes': 'прямая речь в кавычках',
    'iv.kind.letter': 'письмо',
    'iv.kind.diary': 'дневник',
    'iv.kind.custom': 'своя',
    'iv.question': 'Ваш вопрос',
    'iv.ask': 'Спросить',
    'iv.ask.hint': 'Задать вопрос двойнику (Ctrl+Enter в поле вопроса)',
    'iv.asking': 'Двойник отвечает…',
    'iv.answered': 'Ответ записан.',
    'iv.noAnswer': 'Двойник промолчал: ответ пустой, в интервью он не записан.',
    'iv.undo': 'Забрать последний ответ',
    'iv.undo.none': 'Забирать нечего.',
    'iv.noTurns': 'Вопросов ещё не было.',
    'iv.you': 'Вопрос',
    'iv.double': 'Двойник',
    'iv.dropped': { one: 'Самая ранняя реплика не поместилась в контекст модели.', few: '{n} самые ранние реплики не поместились в контекст модели.', many: '{n} самых ранних реплик не поместились в контекст модели.', other: '{n} самых ранних реплик не поместились в контекст модели.' },

    's.preset': 'Пресет',
    's.max_new': 'Длина продолжения, токенов',
    's.guard': 'Защита от копирования, токенов',
    's.guard.hint': 'Защита не даёт двойнику переписать из книг отрезок такой длины; 0 — выключена.',
    's.seed': 'Зерно',
    's.seed.fresh': 'каждый раз новое',
    's.lastSeed': 'Зерно последней генерации: {seed}',
    's.samplers': 'Сэмплер (пусто — как в пресете)',
    's.styles': 'Смешение стилей',
    's.styles.hint': 'Вес каждого адаптера-стиля; 0 — не участвует.',
    's.reset': 'Сбросить к пресету',

    'preset.coherent': 'Связный: низкая температура, ядро 0.95 и штраф за повторы — читаемая проза даже у небольшой модели.',
    'preset.nucleus': 'Ядерная выборка из истории двойника: top_p 0.9, температура 1.0 — разнообразнее и смелее.',
    'preset.greedy': 'Жадный: всегда самое вероятное слово; шаблонно и склонно к повторам. Сэмплер не действует.',
    'preset.beam': 'Лучевой поиск: глобально вероятный текст, без случайности. Сэмплер не действует.',

    'log.export': 'Экспорт',
    'log.export.txt': 'Документ .txt',
    'log.export.md': 'Документ .md',
    'log.export.prefs': 'Выборы (JSONL)',
    'log.export.prefs.hint': 'Пары «выбранный — отвергнутый» вариант из всех документов: данные для дообучения.',
    'log.heading': 'Журнал генераций',
    'log.empty': 'Генераций пока не было.',
    'log.variants': { one: '{count} вариант', few: '{count} варианта', many: '{count} вариантов', other: '{count} варианта' },
    'log.chosen': 'выбран {n}',
    'log.noneChosen': 'ничего не выбрано',
    'log.seed': 'Зерно',
    'log.checkpoint': 'Чекпойнт',
    'log.settings': 'Настройки',
    'log.prompt': 'Конец промпта',
    'log.edited': 'Добавлено с правкой',
    'log.status.running': 'пишется',
    'log.status.done': 'готово',
    'log.status.aborted': 'остановлено',
    'log.status.failed': 'ошибка',
    'log.status.interrupted': 'прервано: сервер остановили',

    'blind.about': 'Отрывки автора из отложенной части корпуса и продолжения двойника тех же начал, равной длины. Читатель не знает, где чей текст.',
    'blind.title': 'Название',
    'blind.title.placeholder': 'например, «Первый круг»',
    'blind.untitled': 'Слепой тест',
    'blind.passages': 'Отрывков',
    'blind.kind': 'Вопросы',
    'blind.kind.both': 'оба вида',
    'blind.kind.single': 'по одному: писатель или двойник?',
    'blind.kind.pairs': 'парами: какой — писатель?',
    'blind.create': 'Создать тест',
    'blind.creating': 'Двойник пишет продолжения… это может занять время.',
    'blind.created': 'Тест готов: дайте ссылку читателям.',
    'blind.unavailable': 'Этот сервер запущен без рабочей папки двойника: отложенных текстов автора нет, новый тест не составить.',
    'blind.local': 'Сервер слушает только этот компьютер: ссылки на тесты откроются только здесь. Чтобы читатели открыли их по локальной сети, запустите',
    'blind.heading': 'Тесты',
    'blind.empty': 'Тестов пока нет.',
    'blind.items': { one: '{n} вопрос', few: '{n} вопроса', many: '{n} вопросов', other: '{n} вопроса' },
    'blind.copy': 'Скопировать ссылку',
    'blind.copied': 'Скопировано',
    'blind.delete': 'Удалить тест',
    'blind.delete.confirm': 'Удалить тест «{title}» вместе с ответами читателей?',
    'blind.noAnswers': 'Ответов пока нет.',
    'blind.readers': { one: 'Ответил {n} читатель.', few: 'Ответили {n} читателя.', many: 'Ответили {n} читателей.', other: 'Ответили {n} читателя.' },
    'blind.sealed': 'Пока тест открыт, результаты скрыты даже здесь: иначе читатель, отвечая под разными именами, узнал бы ответы. Закройте тест, когда все ответят.',
    'blind.close': 'Закрыть тест и показать результаты',
    'blind.close.confirm': 'Закрыть тест «{title}»? Ответы больше не принимаются, а читатели увидят свои результаты по своей ссылке. Открыть его снова нельзя.',
    'blind.overall': 'Все ответы',
    'blind.single': 'По одному',
    'blind.pairs': 'Парами',
    'blind.col.who': 'Кто',
    'blind.col.who.hint': 'Все ответы, по видам вопросов и по читателям',
    'blind.col.accuracy': 'Точность',
    'blind.col.accuracy.hint': 'Доля верных ответов; за ней — верных из всех',
    'blind.col.ci': '95% ДИ',
    'blind.col.ci.hint': '95-процентный доверительный интервал точности (Уилсон)',
    'blind.chance': 'Угадывая наугад, читатель был бы прав в {chance} случаев; p — вероятность угадать так же хорошо наугад.',
    'blind.col.p': 'p',
    'blind.col.p.hint': 'Вероятность угадать так же хорошо наугад (точный биномиальный тест)',
    'blind.verdict.tell': 'Читатели отличают писателя от двойника лучше, чем наугад.',
    'blind.verdict.cannot': 'Пока нельзя сказать, что читатели отличают писателя от двойника: результат не отличим от угадывания.',
    'blind.verdict.fooled': 'Читатели чаще принимают двойника за писателя, чем наоборот.',

    'key.heading': 'Нужен ключ API',
    'key.text': 'Сервер запущен с ключом (--api-key). Введите его; он сохранится в этом браузере.',
    'key.label': 'Ключ',

    'reader.title': 'Кто написал? — слепой тест',
    'reader.name': 'Кто написал?',
    'reader.loading': 'Загружаю тест…',
    'reader.loadFailed': 'Не удалось загрузить тест: {message}',
    'reader.notFound': 'Такого теста нет: проверьте ссылку.',
    'reader.intro1': 'Здесь отрывки прозы. Одни написал писатель, другие — его нейросетевой двойник, продолживший то же начало.',
    'reader.intro2': 'У каждого отрывка есть начало — его всегда написал писатель. Прочтите продолжение и решите, чьё оно. Подсказок не будет; ответ можно изменить до отправки.',
    'reader.count': { one: 'В тесте {n} вопрос.', few: 'В тесте {n} вопроса.', many: 'В тесте {n} вопросов.', other: 'В тесте {n} вопроса.' },
    'reader.yourName': 'Как вас зовут?',
    'reader.start': 'Начать',
    'reader.progress': 'Вопрос {n} из {total}',
    'reader.opening': 'Начало',
    'reader.continuation': 'Продолжение',
    'reader.q.single': 'Писатель или двойник?',
    'reader.q.pair': 'Какой из двух — писатель?',
    'reader.writer': 'Писатель',
    'reader.double': 'Двойник',
    'reader.aIsWriter': 'A — писатель',
    'reader.bIsWriter': 'B — писатель',
    'reader.back': '← Назад',
    'reader.allAnswered': 'Все отрывки прочитаны.',
    'reader.submit': 'Отправить ответы',
    'reader.sendFailed': 'Не удалось отправить ответы: {message}. Они сохранены в браузере — попробуйте ещё раз.',
    'reader.resultHeading': 'Результат',
    'reader.received': 'Спасибо, {name}! Ответы приняты.',
    'reader.score': 'Верно {correct} из {answers} ({accuracy}).',
    'reader.scoreDetail': '95% доверительный интервал: {low}–{high}; наугад вышло бы {chance}; p = {p}.',
    'reader.hidden': 'Результат появится по этой же ссылке, когда автор закроет тест. До тех пор его не видит никто — так тест смогут честно пройти и другие читатели.',
    'reader.closedHeading': 'Тест закрыт',
    'reader.closed': 'Автор закрыл тест: ответы больше не принимаются.',
    'reader.allReaders': 'Все читатели вместе: верно {correct} из {answers} ({accuracy}); наугад вышло бы {chance}.',
    'reader.yours': '{name}: верно {correct} из {answers} ({accuracy}).',
    'reader.tooMany': 'Тест больше не принимает ответов отсюда: {message}.',
    'reader.again': 'Следующий читатель',
    'reader.again.hint': 'Передать тест другому читателю: он введёт своё имя.',
    'reader.nameTaken': 'Имя «{name}» в этом тесте уже есть: каждый читатель отвечает один раз. Введите другое имя — ответы сохранены.',
    'reader.unanswered': 'Ответьте на все вопросы: без ответа — {n}.',
  },

  en: {
    'app.title': 'Double — studio',
    'app.name': 'Double',
    'app.skip': 'Skip to the text',
    'app.language': 'Interface language',
    'app.checkpoint': 'checkpoint: {checkpoint}',
    'app.close': 'Close',
    'app.ok': 'OK',
    'app.cancel': 'Cancel',
    'app.refresh': 'Refresh',

    'docs.heading': 'Documents',
    'docs.new': 'New document',
    'docs.empty': 'No documents yet.',
    'docs.chars': { one: '{n} character', other: '{n} characters' },

    'doc.none': 'Create a document on the left or pick one, and start writing.',
    'doc.title': 'Title',
    'doc.untitled': 'Untitled',
    'doc.text': 'Text',
    'doc.placeholder': 'Start writing here. The double continues from where you stop.',
    'doc.undo': 'Undo',
    'doc.undo.hint': 'Undo the last step of the document’s history (Ctrl+Z outside text fields)',
    'doc.undo.none': 'Nothing to undo.',
    'doc.redo': 'Redo',
    'doc.redo.hint': 'Redo the undone step (Ctrl+Shift+Z or Ctrl+Y outside text fields)',
    'doc.redo.none': 'Nothing to redo.',
    'doc.delete': 'Delete',
    'doc.delete.confirm': 'Delete the document “{title}” with all its history? This cannot be undone.',
    'doc.words': { one: '{n} word', other: '{n} words' },

    'save.saved': 'Saved',
    'save.saving': 'Saving…',
    'save.offline': 'Not saved — server unreachable',
    'save.error': 'Not saved: {message}',
    'save.restored': 'An unsaved draft from this browser was restored; saving it.',

    'doc.updatedElsewhere': 'The document was changed in another tab; this is its newest version.',
    'draft.conflict': 'The document was changed elsewhere — in another tab, or by an undo — while you were writing. This is now the server’s version; yours is kept in this browser as a draft, and you can restore it.',
    'draft.stale': 'This browser kept an unsaved draft of this document ({time}), but the document has changed on the server since, so the draft was not put back. You can restore it (it replaces the server’s version) or discard it.',
    'draft.show': 'Show the draft',
    'draft.restore': 'Restore my version',
    'draft.discard': 'Discard the draft',
    'draft.restored': 'Your version is back; saving it.',

    'err.offline': 'The server is unreachable. What you wrote is kept in the browser and saved when it is back.',
    'err.server': 'Server error: {message}',
    'err.key': 'A valid API key is needed.',
    'err.unsaved': 'The document is not saved on the server yet — wait until the server is reachable.',

    'gen.continue': 'Continue',
    'gen.continue.hint': 'The double writes several variants of a continuation (Ctrl+Enter)',
    'gen.n': 'Variants',
    'gen.stop': 'Stop',
    'gen.retry': 'Retry',
    'gen.discard': 'Discard all',
    'gen.variants': 'Continuation variants',
    'gen.variant': 'Variant {n}',
    'gen.writing': 'The double is writing…',
    'gen.streaming': 'writing…',
    'gen.done': { one: '{count} variant ready: pick it, edit it or discard it.', other: '{count} variants ready: pick one, edit one or discard them.' },
    'gen.stopped': 'Stopped.',
    'gen.stopping': 'Stopping…',
    'gen.stoppedShort': 'stopped',
    'gen.cut': 'the stream ended early',
    'gen.busy': 'The server is busy, try again in {seconds} s',
    'gen.pick': 'Pick',
    'gen.pick.key': 'Key {n} (outside text fields) picks variant {n}',
    'gen.edit': 'Edit',
    'gen.appendEdited': 'Append the edit',
    'gen.appended': 'The variant was appended to the text.',
    'gen.discarded': 'The variants were discarded.',
    'gen.tokens': { one: '{n} token', other: '{n} tokens' },

    'finish.stop': 'end of text',
    'finish.length': 'length limit',
    'finish.abort': 'stopped',

    'copy.none': 'Nothing copied from the books',
    'copy.span': { one: 'Copied from the books: {n} token', other: 'Copied from the books: {n} tokens' },
    'copy.alarm': '— check it is not copied',
    'copy.words': { one: 'Copied from the books: {n} word', other: 'Copied from the books: {n} words' },
    'copy.wordsTokens': { one: '({n} token)', other: '({n} tokens)' },
    'copy.missed': '— the originality guard could not see this copy: the words are the book’s, only the layout differs',
    'copy.missedWhy': 'The guard never lets {n} tokens in a row of the books through, but it compares tokens: other line breaks, quotes, dashes, е for ё or another split into tokens hide a copy from it. Here {n} words or more in a row are the book’s.',

    'panels.label': 'Panels',
    'panels.context': 'Context',
    'panels.sampler': 'Settings',
    'panels.log': 'Log',
    'panels.blind': 'Blind test',

    'meter.heading': 'Context budget',
    'meter.memory': 'Memory',
    'meter.world_info': 'World info',
    'meter.authors_note': 'Author’s note',
    'meter.story': 'Story',
    'meter.continuation': 'Continuation',
    'meter.free': 'Free',
    'meter.cut': { one: '{n} token cut', other: '{n} tokens cut' },
    'meter.total': '{used} of {budget} tokens used; {reserve} kept for the continuation.',

    'ctx.memory': 'Memory',
    'ctx.memory.hint': 'Always at the top of the context: who is who, where and when.',
    'ctx.note': 'Author’s note',
    'ctx.note.hint': 'Inserted near the end of the text: tone, pace, what should happen.',
    'ctx.depth': 'Note depth (paragraphs from the end)',

    'wi.heading': 'World info',
    'wi.hint': 'An entry enters the context when one of its keys appears in the last paragraphs.',
    'wi.add': 'Add entry',
    'wi.keys': 'Keys (comma-separated)',
    'wi.keys.placeholder': 'Anya, Anna Petrovna',
    'wi.secondary': 'Secondary keys (one of them is needed too)',
    'wi.secondary.placeholder': 'optional',
    'wi.content': 'Entry text',
    'wi.always': 'Always in the context',
    'wi.remove': 'Remove',
    'wi.inContext': 'in the context',
    'wi.notInContext': 'not in the context',

    'panels.interview': 'Interview',

    's.voice': 'Voice',
    's.voice.hint': 'Whose voice the double writes in: every author of the corpus is a voice. A mix weighs them.',
    's.voice.mix': 'a mix…',
    's.voice.target': '{name} (the double’s author)',

    'iv.about': 'The question reaches the double in a frame taken from the author’s own prose — a line led by a dash, a letter, a diary; the answer is cut where its turn ends.',
    'iv.choose': 'Interview',
    'iv.new': 'New interview',
    'iv.untitled': 'Interview {n}',
    'iv.delete': 'Delete',
    'iv.delete.confirm': 'Delete the interview “{title}” with all its answers?',
    'iv.empty': 'No interviews yet: start a new one.',
    'iv.frame': 'Frame',
    'iv.frame.kind': 'Kind',
    'iv.frame.preamble': 'Opening',
    'iv.frame.preamble.hint': 'Text before the conversation: who asks, where, when. May be left empty.',
    'iv.frame.question': 'Question',
    'iv.frame.question.hint': 'How a question is written; {question} is where it goes.',
    'iv.frame.answer': 'The answer opens with',
    'iv.frame.end': 'The turn ends at',
    'iv.frame.escapes': 'Write a line break as \\n.',
    'iv.frame.save': 'Save the frame',
    'iv.frame.saved': 'Frame saved: the next questions go in it.',
    'iv.kind.dialogue': 'dialogue (lines led by dashes)',
    'iv.kind.quotes': 'speech in quotes',
    'iv.kind.letter': 'letter',
    'iv.kind.diary': 'diary',
    'iv.kind.custom': 'own',
    'iv.question': 'Your question',
    'iv.ask': 'Ask',
    'iv.ask.hint': 'Put the question to the double (Ctrl+Enter in the question field)',
    'iv.asking': 'The double is answering…',
    'iv.answered': 'Answer kept.',
    'iv.noAnswer': 'The double said nothing: the answer is empty and is not kept.',
    'iv.undo': 'Take back the last answer',
    'iv.undo.none': 'Nothing to take back.',
    'iv.noTurns': 'No questions yet.',
    'iv.you': 'Question',
    'iv.double': 'The double',
    'iv.dropped': { one: 'The earliest turn did not fit in the model’s context.', other: 'The {n} earliest turns did not fit in the model’s context.' },

    's.preset': 'Preset',
    's.max_new': 'Continuation length, tokens',
    's.guard': 'Copy guard, tokens',
    's.guard.hint': 'The guard stops the double from copying a span this long from the books; 0 turns it off.',
    's.seed': 'Seed',
    's.seed.fresh': 'a new one each time',
    's.lastSeed': 'Seed of the last generation: {seed}',
    's.samplers': 'Sampler (blank: the preset’s)',
    's.styles': 'Style mixer',
    's.styles.hint': 'The weight of each style adapter; 0 leaves it out.',
    's.reset': 'Reset to the preset',

    'preset.coherent': 'Coherent: a cool temperature, nucleus 0.95 and a repetition penalty — readable prose even from a small model.',
    'preset.nucleus': 'Nucleus sampling as in the double’s story: top_p 0.9, temperature 1.0 — more varied and daring.',
    'preset.greedy': 'Greedy: always the likeliest word; template-like and prone to loops. The sampler does not apply.',
    'preset.beam': 'Beam search: globally likely text, no randomness. The sampler does not apply.',

    'log.export': 'Export',
    'log.export.txt': 'Document .txt',
    'log.export.md': 'Document .md',
    'log.export.prefs': 'Choices (JSONL)',
    'log.export.prefs.hint': 'Chosen/rejected variant pairs from every document: data for later training.',
    'log.heading': 'Generation log',
    'log.empty': 'No generations yet.',
    'log.variants': { one: '{count} variant', other: '{count} variants' },
    'log.chosen': 'picked {n}',
    'log.noneChosen': 'none picked',
    'log.seed': 'Seed',
    'log.checkpoint': 'Checkpoint',
    'log.settings': 'Settings',
    'log.prompt': 'End of the prompt',
    'log.edited': 'Appended with an edit',
    'log.status.running': 'writing',
    'log.status.done': 'done',
    'log.status.aborted': 'stopped',
    'log.status.failed': 'failed',
    'log.status.interrupted': 'interrupted: the server stopped',

    'blind.about': 'The author’s passages from the held-out part of the corpus and the double’s continuations of the same openings, of equal length. Readers do not know which is which.',
    'blind.title': 'Title',
    'blind.title.placeholder': 'e.g. “First round”',
    'blind.untitled': 'Blind test',
    'blind.passages': 'Passages',
    'blind.kind': 'Questions',
    'blind.kind.both': 'both kinds',
    'blind.kind.single': 'one at a time: writer or double?',
    'blind.kind.pairs': 'in pairs: which is the writer?',
    'blind.create': 'Create test',
    'blind.creating': 'The double is writing its continuations… this may take a while.',
    'blind.created': 'The test is ready: give the link to your readers.',
    'blind.unavailable': 'This server runs without the double’s workspace: there are no held-out texts to make a new test from.',
    'blind.local': 'The server listens on this computer only: test links open here only. For readers on the local network, run',
    'blind.heading': 'Tests',
    'blind.empty': 'No tests yet.',
    'blind.items': { one: '{n} question', other: '{n} questions' },
    'blind.copy': 'Copy link',
    'blind.copied': 'Copied',
    'blind.delete': 'Delete test',
    'blind.delete.confirm': 'Delete the test “{title}” with its readers’ answers?',
    'blind.noAnswers': 'No answers yet.',
    'blind.readers': { one: '{n} reader has answered.', other: '{n} readers have answered.' },
    'blind.sealed': 'While the test is open its results are hidden, here too: otherwise a reader answering under several names could learn the answers. Close the test when everyone has answered.',
    'blind.close': 'Close the test and show the results',
    'blind.close.confirm': 'Close the test “{title}”? It takes no more answers, and readers see their results at their link. It cannot be opened again.',
    'blind.overall': 'All answers',
    'blind.single': 'One at a time',
    'blind.pairs': 'In pairs',
    'blind.col.who': 'Who',
    'blind.col.who.hint': 'All answers, by kind of question and by reader',
    'blind.col.accuracy': 'Accuracy',
    'blind.col.accuracy.hint': 'Share of right answers; then right answers of all',
    'blind.col.ci': '95% CI',
    'blind.col.ci.hint': '95% confidence interval of the accuracy (Wilson)',
    'blind.chance': 'Guessing at random, a reader would be right {chance} of the time; p is the probability of doing as well by guessing.',
    'blind.col.p': 'p',
    'blind.col.p.hint': 'The probability of doing as well by guessing (exact binomial test)',
    'blind.verdict.tell': 'Readers tell the writer from the double better than chance.',
    'blind.verdict.cannot': 'No sign yet that readers can tell the writer from the double: the result is within chance.',
    'blind.verdict.fooled': 'Readers take the double for the writer more often than the other way round.',

    'key.heading': 'API key needed',
    'key.text': 'The server runs with a key (--api-key). Enter it; this browser will remember it.',
    'key.label': 'Key',

    'reader.title': 'Who wrote it? — a blind test',
    'reader.name': 'Who wrote it?',
    'reader.loading': 'Loading the test…',
    'reader.loadFailed': 'Could not load the test: {message}',
    'reader.notFound': 'There is no such test: check the link.',
    'reader.intro1': 'Here are passages of prose. Some were written by the writer, others by the writer’s neural double, continuing the same opening.',
    'reader.intro2': 'Every passage starts with an opening, always the writer’s. Read the continuation and decide whose it is. There are no hints; you can change an answer before you send them.',
    'reader.count': { one: 'The test has {n} question.', other: 'The test has {n} questions.' },
    'reader.yourName': 'Your name',
    'reader.start': 'Start',
    'reader.progress': 'Question {n} of {total}',
    'reader.opening': 'Opening',
    'reader.continuation': 'Continuation',
    'reader.q.single': 'The writer or the double?',
    'reader.q.pair': 'Which of the two is the writer?',
    'reader.writer': 'Writer',
    'reader.double': 'Double',
    'reader.aIsWriter': 'A is the writer',
    'reader.bIsWriter': 'B is the writer',
    'reader.back': '← Back',
    'reader.allAnswered': 'You have read every passage.',
    'reader.submit': 'Send the answers',
    'reader.sendFailed': 'Could not send the answers: {message}. They are kept in the browser — try again.',
    'reader.resultHeading': 'Your result',
    'reader.received': 'Thank you, {name}! Your answers are in.',
    'reader.score': '{correct} of {answers} right ({accuracy}).',
    'reader.scoreDetail': '95% confidence interval: {low}–{high}; guessing would give {chance}; p = {p}.',
    'reader.hidden': 'Your result will appear at this same link when the author closes the test. Until then nobody sees it, so that other readers can take the test fairly too.',
    'reader.closedHeading': 'The test is closed',
    'reader.closed': 'The author has closed the test: it takes no more answers.',
    'reader.allReaders': 'All readers together: {correct} of {answers} right ({accuracy}); guessing would give {chance}.',
    'reader.yours': '{name}: {correct} of {answers} right ({accuracy}).',
    'reader.tooMany': 'The test takes no more answers from here: {message}.',
    'reader.again': 'Next reader',
    'reader.again.hint': 'Pass the test on to another reader, who enters their own name.',
    'reader.nameTaken': 'The name “{name}” has already taken this test: each reader answers once. Enter another name — your answers are kept.',
    'reader.unanswered': 'Answer every question: {n} unanswered.',
  },
};

const LANG_STORAGE = 'dvoinik.lang';
const LANGUAGES = Object.keys(STRINGS);
const listeners = [];

let lang = LANGUAGES.includes(localStorage.getItem(LANG_STORAGE)) ? localStorage.getItem(LANG_STORAGE) : 'ru';
let plurals = new Intl.PluralRules(lang);
document.documentElement.lang = lang;

/** Keys looked up but absent in the current language (the browser tests assert this stays empty). */
export const missing = new Set();
export const languages = LANGUAGES;
export const strings = STRINGS;

export function getLang() {
  return lang;
}

export function setLang(next) {
  if (!LANGUAGES.includes(next) || next === lang) return;
  lang = next;
  plurals = new Intl.PluralRules(lang);
  localStorage.setItem(LANG_STORAGE, lang);
  document.documentElement.lang = lang;
  for (const listener of listeners) listener(lang);
}

export function onLangChange(listener) {
  listeners.push(listener);
}

export function t(key, params = {}) {
  let value = STRINGS[lang][key];
  if (value === undefined) {
    missing.add(`${lang}:${key}`);
    value = STRINGS.ru[key] ?? key;
  }
  if (typeof value === 'object') value = value[plurals.select(Number(params.count ?? 0))] ?? value.other;
  return value.replace(/\{(\w+)\}/g, (match, name) => (params[name] === undefined ? match : String(params[name])));
}

t.has = (key) => key in STRINGS[lang] || key in STRINGS.ru;

/** Translate the static text of a page (or part of one). */
export function applyI18n(root) {
  for (const node of root.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  for (const [attribute, data] of [['placeholder', 'i18nPlaceholder'], ['title', 'i18nTitle'], ['aria-label', 'i18nAriaLabel']]) {
    for (const node of root.querySelectorAll(`[data-${attribute === 'aria-label' ? 'i18n-aria-label' : `i18n-${attribute}`}]`)) {
      node.setAttribute(attribute, t(node.dataset[data]));
    }
  }
  if (root === document) {
    const title = document.querySelector('title[data-i18n]');
    if (title) document.title = t(title.dataset.i18n);
  }
}

export function formatNumber(value, maximumFractionDigits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return '—';
  return new Intl.NumberFormat(lang, { maximumFractionDigits }).format(value);
}

export function formatPercent(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return '—';
  return new Intl.NumberFormat(lang, { style: 'percent', maximumFractionDigits: 0 }).format(value);
}

/** A p-value: three decimals, or "< 0.001" where those would read as zero. */
export function formatP(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return '—';
  if (value < 0.001) return `< ${formatNumber(0.001, 3)}`;
  return formatNumber(value, 3);
}

export function formatTime(iso) {
  if (iso === null || iso === undefined || iso === '') return '';
  // The API sends ISO strings; a bare number is taken as Unix seconds.
  const date = typeof iso === 'number' ? new Date(iso * 1000) : new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return new Intl.DateTimeFormat(lang, { dateStyle: 'short', timeStyle: 'short' }).format(date);
}
